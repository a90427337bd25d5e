package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/anycast-director/director/internal/textdiff"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// History is what the history view needs from one director: its kept
// configurations, their contents, and rollbacks with a dry run. The gRPC
// implementation uses ListConfigs, GetConfig and Rollback.
type History interface {
	// List returns the kept versions, oldest first, and the running one.
	List(ctx context.Context) ([]Version, int64, error)
	// Show returns one version's content (secrets redacted; 0 = running).
	Show(ctx context.Context, version int64) (Version, string, error)
	// Preview returns what rolling back to version would change.
	Preview(ctx context.Context, version int64) (Version, []Change, error)
	// Rollback re-applies version, recording reason; ctx carries the user.
	Rollback(ctx context.Context, version int64, reason string) (Version, error)
}

// Version identifies one kept configuration.
type Version struct {
	Version int64     `json:"version"`
	Digest  string    `json:"digest"`
	Source  string    `json:"source"`
	Loaded  time.Time `json:"loaded"`
}

// Change is one line of a plan.
type Change struct {
	Action  string `json:"action"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

// grpcHistory is History over the director API.
type grpcHistory struct{ c directorv1.DirectorClient }

func versionOf(v *directorv1.ConfigVersion) Version {
	return Version{Version: v.GetVersion(), Digest: v.GetDigest(), Source: v.GetSource(), Loaded: v.GetLoaded().AsTime()}
}

func (g grpcHistory) List(ctx context.Context) ([]Version, int64, error) {
	resp, err := g.c.ListConfigs(ctx, &directorv1.ListConfigsRequest{})
	if err != nil {
		return nil, 0, err
	}
	out := make([]Version, 0, len(resp.GetConfigs()))
	for _, v := range resp.GetConfigs() {
		out = append(out, versionOf(v))
	}
	return out, resp.GetRunning(), nil
}

func (g grpcHistory) Show(ctx context.Context, version int64) (Version, string, error) {
	resp, err := g.c.GetConfig(ctx, &directorv1.GetConfigRequest{Version: version})
	if err != nil {
		return Version{}, "", err
	}
	return versionOf(resp.GetVersion()), resp.GetContent(), nil
}

func (g grpcHistory) Preview(ctx context.Context, version int64) (Version, []Change, error) {
	resp, err := g.c.Rollback(ctx, &directorv1.RollbackRequest{Version: version, DryRun: true})
	if err != nil {
		return Version{}, nil, err
	}
	var out []Change
	for _, c := range resp.GetChanges() {
		out = append(out, Change{Action: enumName(c.GetAction().String(), "CHANGE_ACTION_"),
			Kind: enumName(c.GetKind().String(), "CHANGE_KIND_"), Subject: c.GetSubject(), Detail: c.GetDetail()})
	}
	return versionOf(resp.GetVersion()), out, nil
}

func (g grpcHistory) Rollback(ctx context.Context, version int64, reason string) (Version, error) {
	resp, err := g.c.Rollback(ctx, &directorv1.RollbackRequest{Version: version, Reason: reason})
	if err != nil {
		return Version{}, err
	}
	return versionOf(resp.GetVersion()), nil
}

// historyOf resolves the ?director= parameter, answering the error itself.
func (s *Server) historyOf(w http.ResponseWriter, r *http.Request) (History, bool) {
	name := r.URL.Query().Get("director")
	if s.byName[name] == nil {
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no director %q in this console", name)})
		return nil, false
	}
	return s.history(name), true
}

// badParam is a request parameter the page got wrong (400).
type badParam struct{ error }

// versionParam reads an integer query parameter (absent: 0).
func versionParam(r *http.Request, key string) (int64, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, badParam{fmt.Errorf("%s=%q is not a version number", key, s)}
	}
	return v, nil
}

func callCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// historyRead answers one read of a director's history: it resolves
// ?director=, runs f with a bounded context and answers its value as JSON,
// a bad parameter with 400 and a director's error with 502.
func (s *Server) historyRead(w http.ResponseWriter, r *http.Request, f func(ctx context.Context, h History) (any, error)) {
	h, ok := s.historyOf(w, r)
	if !ok {
		return
	}
	ctx, cancel := callCtx(r)
	defer cancel()
	v, err := f(ctx, h)
	var bad badParam
	switch {
	case errors.As(err, &bad):
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadGateway, apiError{describeErr(err)})
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// handleConfigs lists a director's kept configurations.
func (s *Server) handleConfigs(w http.ResponseWriter, r *http.Request) {
	s.historyRead(w, r, func(ctx context.Context, h History) (any, error) {
		list, running, err := h.List(ctx)
		return map[string]any{"configs": list, "running": running}, err
	})
}

// handleConfig shows one kept configuration.
func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	s.historyRead(w, r, func(ctx context.Context, h History) (any, error) {
		v, err := versionParam(r, "version")
		if err != nil {
			return nil, err
		}
		ver, content, err := h.Show(ctx, v)
		return map[string]any{"version": ver, "content": content}, err
	})
}

// diffView is a diff for the page: the two versions and the hunks.
type diffView struct {
	From  Version         `json:"from"`
	To    Version         `json:"to"`
	Hunks []textdiff.Hunk `json:"hunks"`
}

// diff compares two kept versions of one director (0 = running).
func diff(ctx context.Context, h History, a, b int64) (diffView, error) {
	va, ca, err := h.Show(ctx, a)
	if err != nil {
		return diffView{}, err
	}
	vb, cb, err := h.Show(ctx, b)
	if err != nil {
		return diffView{}, err
	}
	return diffView{From: va, To: vb, Hunks: textdiff.Hunks(textdiff.Lines(ca, cb), 3)}, nil
}

// handleDiff compares versions a and b (b defaults to the running one).
func (s *Server) handleDiff(w http.ResponseWriter, r *http.Request) {
	s.historyRead(w, r, func(ctx context.Context, h History) (any, error) {
		a, err := versionParam(r, "a")
		if err != nil {
			return nil, err
		}
		b, err := versionParam(r, "b")
		if err != nil {
			return nil, err
		}
		return diff(ctx, h, a, b)
	})
}

// handleRollbackPreview is the dry run: the diff from the running
// configuration to the version, and the plan the director would apply.
func (s *Server) handleRollbackPreview(w http.ResponseWriter, r *http.Request) {
	s.historyRead(w, r, func(ctx context.Context, h History) (any, error) {
		v, err := versionParam(r, "version")
		if err != nil {
			return nil, err
		}
		target, changes, err := h.Preview(ctx, v)
		if err != nil {
			return nil, err
		}
		d, err := diff(ctx, h, 0, target.Version)
		return map[string]any{"diff": d, "changes": changes}, err
	})
}

// rollbackRequest is the page's rollback.
type rollbackRequest struct {
	Director string `json:"director"`
	Version  int64  `json:"version"`
	Reason   string `json:"reason"`
}

// handleRollback rolls one director back, as the user, with a reason.
func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	if code, msg := s.checkAction(r, id); code != 0 {
		writeJSON(w, code, apiError{msg})
		return
	}
	var req rollbackRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"the rollback is not valid JSON: " + err.Error()})
		return
	}
	d := s.byName[req.Director]
	switch {
	case d == nil:
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no director %q in this console", req.Director)})
		return
	case req.Reason == "":
		writeJSON(w, http.StatusBadRequest, apiError{"a reason is required: it is recorded in the director's event log"})
		return
	}
	ctx, cancel := callCtx(r)
	defer cancel()
	v, err := s.history(req.Director).Rollback(asUser(ctx, id.name), req.Version, req.Reason)
	s.log.Info("console action", "user", id.name, "action", "rollback", "director", req.Director,
		"version", req.Version, "reason", req.Reason, "ok", err == nil)
	d.Refresh()
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{describeErr(err)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": v})
}
