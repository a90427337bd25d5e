package announcer

import (
	"context"
	"fmt"

	"github.com/anycast-director/director/config"
)

// KeptConfig returns a configuration from the rollback history with its
// version; version 0 is the running one. The Config is shared and must not
// be modified.
func (l *Loop) KeptConfig(ctx context.Context, version int) (*config.Config, ConfigVersion, error) {
	var (
		cfg *config.Config
		ver ConfigVersion
	)
	err := l.query(ctx, func(st *state) error {
		for i, h := range st.history {
			if h.ver.Version == version || (version == 0 && i == len(st.history)-1) {
				cfg, ver = h.cfg, h.ver
				return nil
			}
		}
		return fmt.Errorf("%w: configuration version %d is not kept (kept: %v)", ErrNotFound, version, st.versions())
	})
	return cfg, ver, err
}
