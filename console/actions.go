package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// maxActionBody bounds an action request.
const maxActionBody = 16 << 10

// Action is an operator action as the page sends it.
type Action struct {
	// Kind: drain-backend, enable-backend, set-weight, clear-weight,
	// disable-vip, enable-vip, drain-director, undrain-director.
	Kind string `json:"kind"`
	// Directors the action goes to (each one gets the same call).
	Directors []string `json:"directors"`
	// Service, Address and Port select backends (an empty service and a
	// zero port match every one, as with directorctl).
	Service string `json:"service"`
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// Weight for set-weight.
	Weight uint32 `json:"weight"`
	// VIP for disable-vip and enable-vip.
	VIP string `json:"vip"`
	// Reason is required: it goes to every director's event log.
	Reason string `json:"reason"`
	// For is an optional expiry ("2h"), for the actions that set an override.
	For string `json:"for"`
}

// Result is one director's answer to an action.
type Result struct {
	Director string `json:"director"`
	OK       bool   `json:"ok"`
	Message  string `json:"message"`
}

// handleAction checks the request (authentication happened in secure),
// then sends the action to every selected director in parallel and
// reports each answer.
func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	if code, msg := s.checkAction(r, id); code != 0 {
		writeJSON(w, code, apiError{msg})
		return
	}
	var a Action
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"the action is not valid JSON: " + err.Error()})
		return
	}
	call, err := s.prepare(a)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	results := s.fanOut(r.Context(), id, a, call)
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// call is one action bound to its request, ready to send to a director.
type call func(ctx context.Context, c directorv1.DirectorClient) (string, error)

// prepare validates an action and builds its gRPC call. The directors
// validate again; this catches what the page can say clearly.
func (s *Server) prepare(a Action) (call, error) {
	if strings.TrimSpace(a.Reason) == "" {
		return nil, fmt.Errorf("a reason is required: it is recorded in every director's event log")
	}
	if len(a.Directors) == 0 {
		return nil, fmt.Errorf("select at least one director")
	}
	for _, name := range a.Directors {
		if s.byName[name] == nil {
			return nil, fmt.Errorf("no director %q in this console", name)
		}
	}
	var expiry *durationpb.Duration
	if a.For != "" {
		d, err := time.ParseDuration(a.For)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("for %q is not a positive duration such as 30m or 2h", a.For)
		}
		expiry = durationpb.New(d)
	}
	ref := &directorv1.BackendRef{Service: a.Service, Address: a.Address, Port: a.Port}
	needBackend := func() error {
		if a.Address == "" {
			return fmt.Errorf("%s needs a backend address", a.Kind)
		}
		return nil
	}
	switch a.Kind {
	case "drain-backend":
		return checked(needBackend(), func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			resp, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: ref, Reason: a.Reason, ExpiresAfter: expiry})
			return "drained " + strings.Join(resp.GetMatched(), ", "), err
		})
	case "enable-backend":
		return checked(needBackend(), func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			resp, err := c.EnableBackend(ctx, &directorv1.EnableBackendRequest{Backend: ref, Reason: a.Reason})
			if err == nil && !resp.GetWasDrained() {
				return "was not drained with this reference", nil
			}
			return "enabled " + strings.Join(resp.GetMatched(), ", "), err
		})
	case "set-weight", "clear-weight":
		clear := a.Kind == "clear-weight"
		if !clear && a.Weight > 65535 {
			return nil, fmt.Errorf("weight %d is out of range: 0 to 65535", a.Weight)
		}
		return checked(needBackend(), func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			resp, err := c.SetWeight(ctx, &directorv1.SetWeightRequest{Backend: ref, Weight: a.Weight, Clear: clear,
				Reason: a.Reason, ExpiresAfter: expiry})
			if clear {
				return "weight override cleared on " + strings.Join(resp.GetMatched(), ", "), err
			}
			return fmt.Sprintf("weight %d on %s", a.Weight, strings.Join(resp.GetMatched(), ", ")), err
		})
	case "disable-vip", "enable-vip":
		if a.VIP == "" {
			return nil, fmt.Errorf("%s needs a VIP", a.Kind)
		}
		if a.Kind == "disable-vip" {
			return func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
				_, err := c.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: a.VIP, Reason: a.Reason, ExpiresAfter: expiry})
				return "VIP " + a.VIP + " disabled", err
			}, nil
		}
		return func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			_, err := c.EnableVIP(ctx, &directorv1.EnableVIPRequest{Vip: a.VIP, Reason: a.Reason})
			return "VIP " + a.VIP + " enabled", err
		}, nil
	case "drain-director":
		return func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			_, err := c.DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: a.Reason, ExpiresAfter: expiry})
			return "director drained", err
		}, nil
	case "undrain-director":
		return func(ctx context.Context, c directorv1.DirectorClient) (string, error) {
			_, err := c.UndrainDirector(ctx, &directorv1.UndrainDirectorRequest{Reason: a.Reason})
			return "director undrained", err
		}, nil
	}
	return nil, fmt.Errorf("unknown action %q", a.Kind)
}

func checked(err error, c call) (call, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}

// fanOut runs the call on every selected director at once, as the user,
// and refreshes their status so the page shows the effect.
func (s *Server) fanOut(ctx context.Context, id identity, a Action, c call) []Result {
	results := make([]Result, len(a.Directors))
	var wg sync.WaitGroup
	for i, name := range a.Directors {
		d := s.byName[name]
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(asUser(ctx, id.name), 10*time.Second)
			defer cancel()
			msg, err := c(cctx, d.client)
			results[i] = Result{Director: name, OK: err == nil, Message: msg}
			if err != nil {
				results[i].Message = describeErr(err)
			}
			s.log.Info("console action", "user", id.name, "action", a.Kind, "director", name,
				"reason", a.Reason, "ok", err == nil, "result", results[i].Message)
			d.Refresh()
		})
	}
	wg.Wait()
	return results
}
