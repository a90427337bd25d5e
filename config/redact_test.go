package config

import (
	"strings"
	"testing"
)

// TestRedact: every secret value is replaced, whatever its quoting or
// style, and nothing else changes (line numbers included).
func TestRedact(t *testing.T) {
	in := `# comment with password: in it stays
bgp:
  peers:
    - { address: 10.0.1.1, asn: 65000, password: "md5 \"quoted\" pw" } # trailing
    - address: 10.0.1.2
      password: 'it''s'
    - address: 10.0.1.3
      password: plain-pw
notify:
  webhooks:
    - { url: "https://h.example.net/x", secret: s3cret, timeout: 2s }
  email:
    - server: mail.example.net:587
      password: |
        multi
        line
      from: d@example.net
      password_file: /etc/keep-this-path
`
	want := `# comment with password: in it stays
bgp:
  peers:
    - { address: 10.0.1.1, asn: 65000, password: "<redacted>" } # trailing
    - address: 10.0.1.2
      password: "<redacted>"
    - address: 10.0.1.3
      password: "<redacted>"
notify:
  webhooks:
    - { url: "https://h.example.net/x", secret: "<redacted>", timeout: 2s }
  email:
    - server: mail.example.net:587
      password: "<redacted>"


      from: d@example.net
      password_file: /etc/keep-this-path
`
	got := string(Redact([]byte(in)))
	if got != want {
		t.Errorf("Redact:\n%s\nwant:\n%s", got, want)
	}
	for _, secret := range []string{"md5", "it''s", "plain-pw", "s3cret", "multi", "line\n"} {
		if strings.Contains(got, secret) {
			t.Errorf("%q survived", secret)
		}
	}
	if broken := string(Redact([]byte("bgp: [\n  password: leak\n"))); strings.Contains(broken, "leak") {
		t.Errorf("a file that does not parse keeps its secret:\n%s", broken)
	}
}
