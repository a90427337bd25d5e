package health

import (
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// TestKeyParts: Key is ProbeKey plus the timing; every field that says what
// is probed changes ProbeKey (check's TestEveryFieldIsProbeOrTiming covers the
// encoding field by field), timing changes only Key.
func TestKeyParts(t *testing.T) {
	base := Target{Addr: mustAddr("10.0.2.21"), Port: 80, Spec: check.Spec{Type: check.HTTP,
		Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3, Path: "/healthz", ForwardingCheck: true},
		Path: Path{VIP: mustAddr("198.18.0.10"), Port: 80}}
	if got, want := base.Key(), base.ProbeKey()+"|1s/500ms/2/3"; got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
	if ProbeKeyOf(base.Key()) != base.ProbeKey() {
		t.Errorf("ProbeKeyOf(Key) = %q, want ProbeKey %q", ProbeKeyOf(base.Key()), base.ProbeKey())
	}
	probe := map[string]func(*Target){
		"address":     func(t *Target) { t.Addr = mustAddr("10.0.2.22") },
		"port":        func(t *Target) { t.Port = 81 },
		"type":        func(t *Target) { t.Spec.Type = check.HTTPS },
		"expect_body": func(t *Target) { t.Spec.ExpectBody = "ok" },
		"path":        func(t *Target) { t.Spec.Path = "/" },
		"command":     func(t *Target) { t.Spec.Command = []string{"x"} },
		"forwarding":  func(t *Target) { t.Spec.ForwardingCheck = false },
		"via vip":     func(t *Target) { t.Path.VIP = mustAddr("198.18.0.11") },
		"via port":    func(t *Target) { t.Path.Port = 443 },
		"via tunnel":  func(t *Target) { t.Path.Tunnel = true },
		"no via":      func(t *Target) { t.Path = Path{} },
	}
	for name, change := range probe {
		c := base
		change(&c)
		if c.ProbeKey() == base.ProbeKey() || c.Key() == base.Key() {
			t.Errorf("changing %s keeps the probe key: two different checks would share one probe", name)
		}
	}
	timing := map[string]func(*Target){
		"interval": func(t *Target) { t.Spec.Interval = 2 * time.Second },
		"timeout":  func(t *Target) { t.Spec.Timeout = time.Second },
		"rise":     func(t *Target) { t.Spec.Rise = 4 },
		"fall":     func(t *Target) { t.Spec.Fall = 1 },
	}
	for name, change := range timing {
		c := base
		change(&c)
		if c.ProbeKey() != base.ProbeKey() {
			t.Errorf("changing %s changes the probe key; a timing change must keep the verdict", name)
		}
		if c.Key() == base.Key() {
			t.Errorf("changing %s keeps the key; targets with different timing must be probed apart", name)
		}
	}
}
