package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretValue = "t0p-s3cret-md5"

// peerWith returns a configuration whose only peer has the given password keys.
func peerWith(keys string) string {
	return fmt.Sprintf(`director: { name: d1 }
bgp:
  asn: 65100
  router_id: 10.0.0.1
  peers:
    - address: 10.0.0.2
      asn: 65000
%s
`, keys)
}

// writeSecret writes the secret (with a newline, as echo does) in mode perm.
func writeSecret(t *testing.T, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "peer.key")
	if err := os.WriteFile(p, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPasswordSources(t *testing.T) {
	t.Setenv("DIRECTORD_TEST_MD5", secretValue)
	owner := writeSecret(t, 0o600)
	cases := []struct {
		name, keys string
		wantFrom   string // "" when an error is expected
		wantErr    string
	}{
		{"inline", "      password: " + secretValue, "inline", ""},
		{"file", "      password_file: " + owner, "file " + owner, ""},
		{"environment", "      password_env: DIRECTORD_TEST_MD5", "environment DIRECTORD_TEST_MD5", ""},
		{"group readable", "      password_file: " + writeSecret(t, 0o640), "",
			"t.yaml:8: bgp.peers[0].password_file: " + "%s is accessible by group or others (mode 0640)"},
		{"world readable", "      password_file: " + writeSecret(t, 0o604), "", "(mode 0604)"},
		{"missing file", "      password_file: /nonexistent/peer.key", "", "t.yaml:8: bgp.peers[0].password_file: cannot read the password file"},
		{"relative path", "      password_file: peer.key", "", "is not an absolute path"},
		{"unset variable", "      password_env: DIRECTORD_TEST_UNSET", "", "t.yaml:8: bgp.peers[0].password_env: the environment variable DIRECTORD_TEST_UNSET is not set or empty"},
		{"two sources", "      password: x\n      password_file: " + owner, "", "password, password_file and password_env are alternatives; 2 are set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(peerWith(c.keys)))
			if c.wantFrom != "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				p := cfg.BGP.Peers[0]
				if p.Password != secretValue || p.PasswordFrom != c.wantFrom {
					t.Errorf("password from %q (matches: %v), want the secret from %q", p.PasswordFrom, p.Password == secretValue, c.wantFrom)
				}
				for _, printed := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%v", cfg.BGP.Peers)} {
					if strings.Contains(printed, secretValue) {
						t.Errorf("printing the peer shows the secret: %s", printed)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", c.wantErr)
			}
			want := c.wantErr
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, strings.TrimPrefix(strings.TrimSpace(c.keys), "password_file: "))
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
