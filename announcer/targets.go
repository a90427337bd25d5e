package announcer

import (
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

// targetFor is the health target that decides one backend of svc.
func targetFor(svc *config.Service, b config.Backend) health.Target {
	c := svc.Health
	port := b.Port
	if port == 0 {
		port = svc.Port
	}
	if c.Port != 0 {
		port = c.Port
	}
	expect := c.ExpectBody
	if c.Type == config.CheckUDP {
		expect = c.Expect
	}
	return health.Target{
		Addr: b.Address,
		Port: port,
		Spec: health.Spec{
			Type:          health.Type(c.Type),
			Interval:      c.Interval,
			Timeout:       c.Timeout,
			Rise:          c.Rise,
			Fall:          c.Fall,
			Source:        c.Source,
			Method:        c.Method,
			Path:          c.Path,
			Host:          c.Host,
			ExpectStatus:  c.ExpectStatus,
			ExpectBody:    expect,
			TLSServerName: c.TLSServerName,
			TLSVerify:     c.TLSVerify,
			Payload:       c.Payload,
			Query:         c.Query,
			QueryType:     c.QueryType,
			RCode:         c.RCode,
			Command:       c.Command,
		},
	}
}

// Targets returns every health target the configuration needs, deduplicated
// by key, in configuration order.
func Targets(cfg *config.Config) []health.Target {
	seen := map[string]bool{}
	var out []health.Target
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		for _, b := range backendsOf(svc) {
			t := targetFor(svc, b)
			if k := t.Key(); !seen[k] {
				seen[k] = true
				out = append(out, t)
			}
		}
	}
	return out
}
