package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestNotifySection: defaults fill what a section leaves out, channels
// inherit the section's kinds unless they name their own, and a secret file
// is read (without its trailing newline).
func TestNotifySection(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, `
director: { name: d1, announce: none }
services:
  - { name: web, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.21 } ] }
notify:
  events: [backend, vip]
  webhooks:
    - { url: "https://hooks.example.net/d", secret_file: `+secret+`, events: [vip] }
  email:
    - { server: "mail.example.net:587", username: alerts, password: pw, from: "Director <d@example.net>", to: [ops@example.net] }
  exec:
    - { command: [/usr/local/bin/page, --now], timeout: 3s, max_attempts: 2, backoff: 100ms }
`)
	d := Delivery{Timeout: DefaultNotifyTimeout, MaxAttempts: DefaultNotifyAttempts, Backoff: DefaultNotifyBackoff}
	want := Notify{GroupWindow: DefaultNotifyGroupWindow, Burst: DefaultNotifyBurst, Every: DefaultNotifyEvery,
		Events:   []string{"backend", "vip"},
		Webhooks: []Webhook{{Delivery: with(d, []string{"vip"}), URL: "https://hooks.example.net/d", Secret: "s3cret"}},
		Email: []Email{{Delivery: with(d, []string{"backend", "vip"}), Server: "mail.example.net:587", TLS: "starttls",
			Username: "alerts", Password: "pw", From: "Director <d@example.net>", To: []string{"ops@example.net"}}},
		Exec: []ExecHook{{Delivery: Delivery{Timeout: 3 * time.Second, MaxAttempts: 2, Backoff: 100 * time.Millisecond,
			Events: []string{"backend", "vip"}}, Command: []string{"/usr/local/bin/page", "--now"}}},
	}
	if diff := cmp.Diff(want, c.Notify); diff != "" {
		t.Errorf("notify (-want +got):\n%s", diff)
	}
	if !c.Notify.Enabled() || (Notify{}).Enabled() {
		t.Errorf("Enabled is wrong")
	}
	cl := c.Clone()
	cl.Notify.Email[0].To[0] = "changed@example.net"
	if c.Notify.Email[0].To[0] != "ops@example.net" {
		t.Errorf("Clone shares the recipients")
	}
}

func with(d Delivery, events []string) Delivery {
	d.Events = events
	return d
}
