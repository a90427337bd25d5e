package announcer

import (
	"context"
	"fmt"

	"github.com/anycast-director/director/config"
)

// KeptConfig returns a configuration from the rollback history with its
// version; version 0 is the running one. The Config is shared and must not
// be modified. A version restored from the state directory is parsed from
// its file here, on the caller's goroutine; a file this directord refuses
// (a key that changed meaning, a password file that is gone) returns the
// configuration errors.
func (l *Loop) KeptConfig(ctx context.Context, version int) (*config.Config, ConfigVersion, error) {
	h, err := l.kept(ctx, version)
	if err != nil || h.cfg != nil {
		return h.cfg, h.ver, err
	}
	cfg, err := config.Parse(h.ver.Source, h.content)
	if err != nil {
		return nil, h.ver, fmt.Errorf("%w: configuration version %d cannot be loaded by this directord: %w", ErrInvalid, h.ver.Version, err)
	}
	cfg.Source = h.ver.Source
	return cfg, h.ver, nil
}

// KeptContent returns a kept configuration's file as it was loaded, with its
// version; version 0 is the running one. The bytes are shared and must not
// be modified.
func (l *Loop) KeptContent(ctx context.Context, version int) ([]byte, ConfigVersion, error) {
	h, err := l.kept(ctx, version)
	return h.content, h.ver, err
}

// kept finds a history entry (0: the running one).
func (l *Loop) kept(ctx context.Context, version int) (loaded, error) {
	var out loaded
	err := l.query(ctx, func(st *state) error {
		for i, h := range st.history {
			if h.ver.Version == version || (version == 0 && i == len(st.history)-1) {
				out = h
				return nil
			}
		}
		return fmt.Errorf("%w: configuration version %d is not kept (kept: %v)", ErrNotFound, version, st.versions())
	})
	return out, err
}
