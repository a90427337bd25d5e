package control

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// RollbackResult is what a rollback did (ServerOptions.Rollback).
type RollbackResult struct {
	// Version is the new running configuration.
	Version announcer.ConfigVersion
	// File is the configuration file that now holds it ("" when not
	// written).
	File string
	// Backup is where the replaced file was kept ("" when the file already
	// held that version).
	Backup string
	// FileError says why the file could not be written; the rollback is in
	// force regardless.
	FileError string
}

// historian is what GetConfig and a rollback dry run need beyond Director.
// *announcer.Loop implements it; a Director without it answers
// Unimplemented.
type historian interface {
	// KeptConfig returns a kept configuration, parsed (0: the running one).
	KeptConfig(ctx context.Context, version int) (*config.Config, announcer.ConfigVersion, error)
	// KeptContent returns a kept configuration's file (0: the running one).
	KeptContent(ctx context.Context, version int) ([]byte, announcer.ConfigVersion, error)
	// Preview returns what loading cfg would change.
	Preview(ctx context.Context, cfg *config.Config) ([]announcer.Change, error)
}

// GetConfig returns a kept configuration's content with secrets redacted.
func (s *service) GetConfig(ctx context.Context, req *directorv1.GetConfigRequest) (*directorv1.GetConfigResponse, error) {
	h, ok := s.opts.Director.(historian)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this daemon keeps no configuration contents")
	}
	if req.GetVersion() < 0 {
		return nil, invalid("version %d is negative: use a version from `directorctl configs`, or 0 for the running one", req.GetVersion())
	}
	content, v, err := h.KeptContent(ctx, int(req.GetVersion()))
	if err != nil {
		if hist, herr := s.opts.Director.History(ctx); herr == nil {
			return nil, notFound("configuration version %d is not kept: use one of %s (see `directorctl configs`)", req.GetVersion(), versionList(hist))
		}
		return nil, toStatus("get configuration", err)
	}
	return &directorv1.GetConfigResponse{Version: versionToProto(v), Content: string(config.Redact(content))}, nil
}

// previewRollback returns the plan of a rollback to version (0: the
// previous one) without applying it. checkRollback has vetted version.
func (s *service) previewRollback(ctx context.Context, hist []announcer.ConfigVersion, version int64) (*directorv1.RollbackResponse, error) {
	h, ok := s.opts.Director.(historian)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "rollback --dry-run is not available in this daemon")
	}
	if version == 0 {
		version = int64(hist[len(hist)-2].Version)
	}
	cfg, v, err := h.KeptConfig(ctx, int(version))
	if err != nil {
		return nil, toStatus("rollback dry run", err)
	}
	changes, err := h.Preview(ctx, cfg)
	if err != nil {
		return nil, toStatus("rollback dry run", err)
	}
	return &directorv1.RollbackResponse{Version: versionToProto(v), Changes: changesToProto(changes)}, nil
}
