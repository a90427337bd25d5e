package announcer

import (
	"slices"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
)

// backendsOf returns the backends whose health decides a service. A `local`
// service without backends is checked at its own VIP and port: the process
// serving it runs on this host.
func backendsOf(svc *config.Service) []config.Backend {
	if len(svc.Backends) == 0 && svc.Forwarding == config.ForwardLocal {
		return []config.Backend{{Address: svc.VIP, Port: svc.Port, Weight: 1}}
	}
	return svc.Backends
}

// targetFor is the health target that decides one backend of svc: the
// service's check as is (config.Check is health's check.Spec), with its port
// override applied to the target's port.
func targetFor(svc *config.Service, b config.Backend) health.Target {
	spec := svc.Health
	port := b.Port
	if port == 0 {
		port = svc.Port
	}
	if spec.Port != 0 {
		port = spec.Port
	}
	// Applied: a check naming the backend's own port is the same probe as
	// one naming none.
	spec.Port = 0
	t := health.Target{Addr: b.Address, Port: port, Spec: spec}
	if spec.ForwardingCheck {
		t.Path = health.Path{VIP: svc.VIP, Port: svc.Port, Tunnel: svc.Forwarding == config.ForwardTunnel}
	}
	return t
}

// Targets returns every health target the configuration needs, deduplicated
// by key, in configuration order.
func Targets(cfg *config.Config) []health.Target {
	return targetsKeyed(cfg, TargetKeys(cfg))
}

// targetsKeyed is Targets with the keys already computed (TargetKeys(cfg),
// which the loop keeps): a key hashes the check, and a reload need not hash
// every target twice.
func targetsKeyed(cfg *config.Config, keys [][]string) []health.Target {
	n := 0
	for _, ks := range keys {
		n += len(ks)
	}
	// Sized once: a target is a few hundred bytes, and growing the slice
	// to 10,000 of them copied megabytes on every reload.
	seen := make(map[string]bool, n)
	out := make([]health.Target, 0, n)
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		for j, b := range backendsOf(svc) {
			if k := keys[i][j]; !seen[k] {
				seen[k] = true
				out = append(out, targetFor(svc, b))
			}
		}
	}
	return out
}

// updateHealth hands the health checks the targets of the running
// configuration, unless they were given these very targets last time (a
// reload that changes weights, names or anything but the checks): the
// scheduler would keep every target as it is, and building and keying the
// targets again cost tens of milliseconds per 1,000 under emulation.
func (l *Loop) updateHealth(st *state) {
	if st.checked != nil && slices.EqualFunc(st.checked, st.keys, slices.Equal[[]string]) {
		return
	}
	l.deps.Health.Update(targetsKeyed(st.cfg, st.keys))
	st.checked = st.keys
}
