package control

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/anycast-director/director/announcer"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// service implements directorv1.DirectorServer on top of the Director and
// the daemon's hooks. Every request is validated completely before anything
// changes, so a refused request has no effect.
type service struct {
	directorv1.UnimplementedDirectorServer
	opts ServerOptions
	log  *slog.Logger
	// stopping is closed when the server shuts down, ending Watch streams
	// so a graceful stop does not wait for them.
	stopping chan struct{}
	// epoch identifies this process's event numbering for Watch resumes.
	epoch string
	// watchers counts the open Watch streams (at most maxWatchers).
	watchers atomic.Int64
}

// audit logs a mutating call with its caller; outcome is "ok" or the error.
func (s *service) audit(ctx context.Context, call, reason string, err error, attrs ...any) {
	args := append([]any{"call", call, "caller", Caller(ctx), "reason", reason}, attrs...)
	if err != nil {
		s.log.Warn("control call refused", append(args, "err", err)...)
		return
	}
	s.log.Info("control call", args...)
}

// GetStatus converts the latest snapshot. It does not cache the result: at
// 10,000 backends the message and the snapshot it came from would keep
// about 10 MB alive between calls, while converting costs about 3 ms.
func (s *service) GetStatus(context.Context, *directorv1.GetStatusRequest) (*directorv1.GetStatusResponse, error) {
	return statusToProto(s.opts.Director.Status()), nil
}

// DrainBackend validates the reference and note, then sets the drain.
func (s *service) DrainBackend(ctx context.Context, req *directorv1.DrainBackendRequest) (resp *directorv1.DrainBackendResponse, err error) {
	defer func() { s.audit(ctx, "DrainBackend", req.GetReason(), err, "backend", refString(req.GetBackend())) }()
	st := s.opts.Director.Status()
	ref, err := parseBackendRef(req.GetBackend(), st)
	if err != nil {
		return nil, err
	}
	note, err := parseNote(req.GetReason(), req.GetExpiresAfter(), Caller(ctx), s.opts.Now())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Director.DrainBackend(ctx, ref, note); err != nil {
		return nil, toStatus("drain backend "+ref.String(), err)
	}
	return &directorv1.DrainBackendResponse{Matched: matchBackends(st, ref),
		Override: overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_BACKEND, &ref, "", 0, note)}, nil
}

// EnableBackend lifts every drain the reference covers.
func (s *service) EnableBackend(ctx context.Context, req *directorv1.EnableBackendRequest) (resp *directorv1.EnableBackendResponse, err error) {
	defer func() { s.audit(ctx, "EnableBackend", req.GetReason(), err, "backend", refString(req.GetBackend())) }()
	st := s.opts.Director.Status()
	ref, err := parseBackendRefOr(req.GetBackend(), st, func(r announcer.BackendRef) bool {
		return len(covered(r, st.Overrides.Drained)) > 0
	})
	if err != nil {
		return nil, err
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if err := s.opts.Director.EnableBackend(ctx, ref, announcer.Note{Reason: req.GetReason(), Who: Caller(ctx)}); err != nil {
		return nil, toStatus("enable backend "+ref.String(), err)
	}
	resp = &directorv1.EnableBackendResponse{Matched: matchBackends(st, ref)}
	for _, r := range covered(ref, st.Overrides.Drained) {
		resp.Lifted = append(resp.Lifted, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_BACKEND, &r, "", 0, st.Overrides.Drained[r]))
	}
	resp.WasDrained = len(resp.Lifted) > 0
	return resp, nil
}

// SetWeight sets a weight override, or clears every one the reference
// covers.
func (s *service) SetWeight(ctx context.Context, req *directorv1.SetWeightRequest) (resp *directorv1.SetWeightResponse, err error) {
	defer func() {
		s.audit(ctx, "SetWeight", req.GetReason(), err, "backend", refString(req.GetBackend()),
			"weight", req.GetWeight(), "clear", req.GetClear())
	}()
	st := s.opts.Director.Status()
	ref, err := parseBackendRefOr(req.GetBackend(), st, func(r announcer.BackendRef) bool {
		return req.GetClear() && len(covered(r, st.Overrides.Weights)) > 0
	})
	if err != nil {
		return nil, err
	}
	if !req.GetClear() && req.GetWeight() > 65535 {
		return nil, invalid("weight %d is out of range: use 0 to 65535 (0 stops new connections), or clear the override", req.GetWeight())
	}
	note, err := parseNote(req.GetReason(), req.GetExpiresAfter(), Caller(ctx), s.opts.Now())
	if err != nil {
		return nil, err
	}
	weight := int(req.GetWeight())
	if req.GetClear() {
		weight = -1
	}
	if err := s.opts.Director.SetWeight(ctx, ref, weight, note); err != nil {
		return nil, toStatus("set weight on "+ref.String(), err)
	}
	resp = &directorv1.SetWeightResponse{Matched: matchBackends(st, ref)}
	if !req.GetClear() {
		resp.Override = overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_WEIGHT, &ref, "", uint32(weight), note)
		return resp, nil
	}
	for _, r := range covered(ref, st.Overrides.Weights) {
		w := st.Overrides.Weights[r]
		resp.Cleared = append(resp.Cleared, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_WEIGHT, &r, "", uint32(max(w.Weight, 0)), w.Note))
	}
	return resp, nil
}

// covered lists the keys of m that ref covers, in a stable order.
func covered[V any](ref announcer.BackendRef, m map[announcer.BackendRef]V) []announcer.BackendRef {
	var out []announcer.BackendRef
	for k := range m {
		if ref.Covers(k) {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareRefs)
	return out
}

// DisableVIP withdraws a VIP gracefully.
func (s *service) DisableVIP(ctx context.Context, req *directorv1.DisableVIPRequest) (resp *directorv1.DisableVIPResponse, err error) {
	defer func() { s.audit(ctx, "DisableVIP", req.GetReason(), err, "vip", req.GetVip()) }()
	st := s.opts.Director.Status()
	vip, err := parseVIP(req.GetVip(), st)
	if err != nil {
		return nil, err
	}
	note, err := parseNote(req.GetReason(), req.GetExpiresAfter(), Caller(ctx), s.opts.Now())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Director.DisableVIP(ctx, vip, note); err != nil {
		return nil, toStatus("disable VIP "+vip.String(), err)
	}
	return &directorv1.DisableVIPResponse{
		Override: overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DISABLE_VIP, nil, vip.String(), 0, note)}, nil
}

// EnableVIP lifts DisableVIP.
func (s *service) EnableVIP(ctx context.Context, req *directorv1.EnableVIPRequest) (resp *directorv1.EnableVIPResponse, err error) {
	defer func() { s.audit(ctx, "EnableVIP", req.GetReason(), err, "vip", req.GetVip()) }()
	st := s.opts.Director.Status()
	vip, err := parseVIPOr(req.GetVip(), st, true)
	if err != nil {
		return nil, err
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	_, was := st.Overrides.DisabledVIPs[vip]
	if err := s.opts.Director.EnableVIP(ctx, vip, announcer.Note{Reason: req.GetReason(), Who: Caller(ctx)}); err != nil {
		return nil, toStatus("enable VIP "+vip.String(), err)
	}
	return &directorv1.EnableVIPResponse{WasDisabled: was}, nil
}

// DrainDirector withdraws every VIP gracefully.
func (s *service) DrainDirector(ctx context.Context, req *directorv1.DrainDirectorRequest) (resp *directorv1.DrainDirectorResponse, err error) {
	defer func() { s.audit(ctx, "DrainDirector", req.GetReason(), err) }()
	note, err := parseNote(req.GetReason(), req.GetExpiresAfter(), Caller(ctx), s.opts.Now())
	if err != nil {
		return nil, err
	}
	if err := s.opts.Director.DrainDirector(ctx, note); err != nil {
		return nil, toStatus("drain director", err)
	}
	return &directorv1.DrainDirectorResponse{
		Override: overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_DIRECTOR, nil, "", 0, note)}, nil
}

// UndrainDirector lifts DrainDirector.
func (s *service) UndrainDirector(ctx context.Context, req *directorv1.UndrainDirectorRequest) (resp *directorv1.UndrainDirectorResponse, err error) {
	defer func() { s.audit(ctx, "UndrainDirector", req.GetReason(), err) }()
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	was := s.opts.Director.Status().Overrides.Director != nil
	if err := s.opts.Director.UndrainDirector(ctx, announcer.Note{Reason: req.GetReason(), Who: Caller(ctx)}); err != nil {
		return nil, toStatus("undrain director", err)
	}
	return &directorv1.UndrainDirectorResponse{WasDrained: was}, nil
}

// Reload asks the daemon to re-read its configuration file.
func (s *service) Reload(ctx context.Context, req *directorv1.ReloadRequest) (resp *directorv1.ReloadResponse, err error) {
	if !req.GetDryRun() {
		defer func() { s.audit(ctx, "Reload", "", err) }()
	}
	if s.opts.Reload == nil {
		return nil, status.Error(codes.Unimplemented, "reload is not available in this daemon: send SIGHUP to directord instead")
	}
	changes, v, err := s.opts.Reload(announcer.WithWho(ctx, Caller(ctx)), req.GetDryRun())
	if err != nil {
		return nil, reloadStatus(err)
	}
	return &directorv1.ReloadResponse{Changes: changesToProto(changes), Applied: !req.GetDryRun(),
		Version: versionToProto(v)}, nil
}

// reloadStatus maps a reload failure. The request has no arguments, so a
// problem with the configuration file is a precondition to fix on the
// server, not a malformed request. The message does not repeat the call's
// name: clients add it (directorctl prints "reload: ...").
func reloadStatus(err error) error {
	var ferr *ConfigFileError
	if errors.As(err, &ferr) {
		return status.Error(codes.FailedPrecondition, err.Error()+"\n(the running configuration is kept; fix the file and reload again)")
	}
	return toStatus("", err)
}

// Rollback re-applies a kept configuration, or with dry_run returns what
// that would change.
func (s *service) Rollback(ctx context.Context, req *directorv1.RollbackRequest) (resp *directorv1.RollbackResponse, err error) {
	if !req.GetDryRun() {
		defer func() { s.audit(ctx, "Rollback", req.GetReason(), err, "version", req.GetVersion()) }()
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if req.GetVersion() < 0 {
		return nil, invalid("version %d is negative: use a version from `directorctl configs`, or 0 for the previous one", req.GetVersion())
	}
	hist, err := s.opts.Director.History(ctx)
	if err != nil {
		return nil, toStatus("rollback", err)
	}
	if err := checkRollback(hist, req.GetVersion()); err != nil {
		return nil, err
	}
	if req.GetDryRun() {
		return s.previewRollback(ctx, hist, req.GetVersion())
	}
	ctx = announcer.WithReason(announcer.WithWho(ctx, Caller(ctx)), req.GetReason())
	if s.opts.Rollback == nil {
		v, err := s.opts.Director.Rollback(ctx, int(req.GetVersion()))
		if err != nil {
			return nil, toStatus("rollback", err)
		}
		return &directorv1.RollbackResponse{Version: versionToProto(v), Applied: true}, nil
	}
	res, err := s.opts.Rollback(ctx, int(req.GetVersion()))
	if err != nil {
		return nil, toStatus("rollback", err)
	}
	return &directorv1.RollbackResponse{Version: versionToProto(res.Version), Applied: true,
		File: res.File, Backup: res.Backup, FileError: res.FileError}, nil
}

// checkRollback refuses a rollback the history cannot satisfy, with the
// versions that can be used.
func checkRollback(hist []announcer.ConfigVersion, version int64) error {
	if version == 0 {
		if len(hist) < 2 {
			return status.Error(codes.FailedPrecondition, "there is no previous configuration to roll back to: only the running one is kept")
		}
		return nil
	}
	for _, h := range hist {
		if int64(h.Version) == version {
			if h.Version == hist[len(hist)-1].Version {
				return status.Errorf(codes.FailedPrecondition, "version %d is the running configuration: pick an older one from `directorctl configs`", version)
			}
			return nil
		}
	}
	return notFound("configuration version %d is not kept: use one of %s (see `directorctl configs`)", version, versionList(hist))
}

// ListConfigs lists the kept configurations.
func (s *service) ListConfigs(ctx context.Context, _ *directorv1.ListConfigsRequest) (*directorv1.ListConfigsResponse, error) {
	hist, err := s.opts.Director.History(ctx)
	if err != nil {
		return nil, toStatus("list configurations", err)
	}
	resp := &directorv1.ListConfigsResponse{}
	for _, h := range hist {
		resp.Configs = append(resp.Configs, versionToProto(h))
	}
	if len(hist) > 0 {
		resp.Running = int64(hist[len(hist)-1].Version)
	}
	return resp, nil
}

// refString renders a request's backend reference for the audit log.
func refString(r *directorv1.BackendRef) string {
	if r == nil {
		return ""
	}
	return r.GetService() + "/" + r.GetAddress() + ":" + itoa(r.GetPort())
}
