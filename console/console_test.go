package console

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
)

// dialUnix connects to a director's socket, as directorctl does.
func dialUnix(t Target) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+t.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// usersFile writes alice (operate) and bob (read) with their passwords.
func usersFile(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, u := range []struct{ name, pass, role string }{{"alice", "alice-pw-1", "operate"}, {"bob", "bob-pw-123", "read"}} {
		// The lowest cost keeps the race detector's bcrypt quick; the
		// console compares with whatever cost the hash has.
		h, err := bcrypt.GenerateFromPassword([]byte(u.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", u.name, h, u.role)
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("# console users\n"+b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startConsole serves a console for the harnesses' directors (d1, d2, ...)
// after o.Directors until the test ends.
func startConsole(t *testing.T, o Options, hs ...*controltest.Harness) *Server {
	t.Helper()
	for i, h := range hs {
		o.Directors = append(o.Directors, Target{Name: fmt.Sprintf("d%d", i+1), Addr: h.Sock})
	}
	o.Listen, o.Dial = "127.0.0.1:0", dialUnix
	if o.Poll == 0 {
		o.Poll = 100 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// request sends one request as a browser on the console's page would
// (or would not), and returns the status and body.
type request struct {
	method, path, body string
	user, pass         string
	origin, csrf       string
}

func do(t *testing.T, s *Server, r request) (int, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, strings.TrimSuffix(s.URL(), "/")+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	if r.csrf != "" {
		req.Header.Set("X-CSRF-Token", r.csrf)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// session signs in and returns the CSRF token the page would get.
func session(t *testing.T, s *Server, user, pass string) sessionInfo {
	t.Helper()
	code, body := do(t, s, request{method: "GET", path: "/api/session", user: user, pass: pass})
	if code != http.StatusOK {
		t.Fatalf("session for %s: %d %s", user, code, body)
	}
	var info sessionInfo
	json.Unmarshal([]byte(body), &info)
	return info
}

// actions lists one valid request per action endpoint.
func actions() []request {
	return []request{
		{method: "POST", path: "/api/action", body: `{"kind":"drain-backend","directors":["d1"],"address":"10.0.2.21","reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"enable-backend","directors":["d1"],"address":"10.0.2.21","reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"set-weight","directors":["d1"],"address":"10.0.2.21","weight":3,"reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"clear-weight","directors":["d1"],"address":"10.0.2.21","reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"disable-vip","directors":["d1"],"vip":"198.18.0.10","reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"enable-vip","directors":["d1"],"vip":"198.18.0.10","reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"drain-director","directors":["d1"],"reason":"t"}`},
		{method: "POST", path: "/api/action", body: `{"kind":"undrain-director","directors":["d1"],"reason":"t"}`},
		{method: "POST", path: "/api/rollback", body: `{"director":"d1","version":1,"reason":"t"}`},
	}
}

// TestSecurity: without credentials every request is 401; a read-only user
// gets 403 on every action; an operate user is refused from another origin
// or without the CSRF token, and gets through with both.
func TestSecurity(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	s := startConsole(t, Options{UsersFile: usersFile(t), AllowActions: true}, h)
	origin := strings.TrimSuffix(s.URL(), "/")
	alice, bob := session(t, s, "alice", "alice-pw-1"), session(t, s, "bob", "bob-pw-123")
	if !alice.CanAct || alice.CSRF == "" || bob.CanAct || bob.CSRF != "" {
		t.Fatalf("sessions: alice %+v, bob %+v", alice, bob)
	}
	for _, path := range []string{"/", "/app.js", "/api/session", "/api/view", "/api/stream", "/api/configs?director=d1"} {
		if code, _ := do(t, s, request{method: "GET", path: path}); code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d, want 401", path, code)
		}
		if code, _ := do(t, s, request{method: "GET", path: path, user: "alice", pass: "wrong"}); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong password: %d, want 401", path, code)
		}
		if code, _ := do(t, s, request{method: "GET", path: path, user: "mallory", pass: "alice-pw-1"}); code != http.StatusUnauthorized {
			t.Errorf("GET %s as an unknown user: %d, want 401", path, code)
		}
	}
	for _, a := range actions() {
		what := a.path + " " + a.body
		r := a
		if code, _ := do(t, s, r); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", what, code)
		}
		r.user, r.pass, r.origin, r.csrf = "bob", "bob-pw-123", origin, alice.CSRF
		if code, body := do(t, s, r); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("%s as read-only bob: %d %s, want 403", what, code, body)
		}
		r.user, r.pass, r.origin = "alice", "alice-pw-1", "https://evil.example"
		if code, body := do(t, s, r); code != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
			t.Errorf("%s from another origin: %d %s, want 403", what, code, body)
		}
		r.origin = ""
		if code, _ := do(t, s, r); code != http.StatusForbidden {
			t.Errorf("%s without an Origin: %d, want 403", what, code)
		}
		r.origin, r.csrf = origin, "0000"
		if code, body := do(t, s, r); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s with a wrong CSRF token: %d %s, want 403", what, code, body)
		}
		if a.path == "/api/rollback" {
			continue // a real rollback needs an older version: TestRollbackThroughTheConsole
		}
		r.csrf = alice.CSRF
		if code, body := do(t, s, r); code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
			t.Errorf("%s as alice from the page: %d %s, want 200 and ok", what, code, body)
		}
	}
	if code, _ := do(t, s, request{method: "GET", path: "/api/action", user: "alice", pass: "alice-pw-1"}); code < 400 {
		t.Errorf("GET /api/action: %d, want a refusal", code)
	}
}

// TestReadOnlyConsoles: without --allow-actions even an operate user is
// refused, and without users everyone is anonymous and read-only.
func TestReadOnlyConsoles(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ro := startConsole(t, Options{UsersFile: usersFile(t)}, h)
	alice := session(t, ro, "alice", "alice-pw-1")
	if alice.CanAct || !alice.ActionsOff {
		t.Errorf("alice on a read-only console: %+v", alice)
	}
	anon := startConsole(t, Options{AllowActions: true}, h)
	if info := session(t, anon, "", ""); info.CanAct || !info.Anonymous {
		t.Errorf("anonymous session: %+v", info)
	}
	for _, s := range []*Server{ro, anon} {
		for _, a := range actions() {
			a.user, a.pass, a.origin, a.csrf = "alice", "alice-pw-1", strings.TrimSuffix(s.URL(), "/"), alice.CSRF
			if s == anon {
				a.user = ""
			}
			if code, _ := do(t, s, a); code != http.StatusForbidden {
				t.Errorf("%s on a read-only console: %d, want 403", a.body, code)
			}
		}
	}
	if st := h.Loop.Status(); st.Overrides.Director != nil || len(st.Overrides.Drained) > 0 {
		t.Errorf("a refused action changed something: %+v", st.Overrides)
	}
}

// TestExposureNeedsTLSAndUsers: beyond loopback the console refuses to
// start without TLS and users.
func TestExposureNeedsTLSAndUsers(t *testing.T) {
	base := Options{Directors: []Target{{Name: "d1", Addr: "/nonexistent"}}, Dial: dialUnix}
	for _, tc := range []struct {
		o    func(Options) Options
		want string
	}{
		{func(o Options) Options { o.Listen = "0.0.0.0:8470"; return o }, "needs --tls-cert, --tls-key and --users"},
		{func(o Options) Options { o.Listen = "192.0.2.1:8470"; o.UsersFile = "u"; return o }, "needs --tls-cert"},
		{func(o Options) Options { o.Listen = "[::]:8470"; o.TLSCert, o.TLSKey = "c", "k"; return o }, "--users"},
		{func(o Options) Options { o.TLSCert = "c"; return o }, "both --tls-cert and --tls-key"},
	} {
		if _, err := New(tc.o(base)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o(base), err, tc.want)
		}
	}
	if _, err := New(base); err != nil {
		t.Errorf("loopback without TLS: %v", err)
	}
}

// TestActionReachesEveryDirectorAsTheUser: one drain goes to both
// directors, each records the console's identity on behalf of alice with
// the reason, and the view shows both draining.
func TestActionReachesEveryDirectorAsTheUser(t *testing.T) {
	h1, h2 := controltest.Start(t, controltest.Options{}), controltest.Start(t, controltest.Options{})
	s := startConsole(t, Options{UsersFile: usersFile(t), AllowActions: true}, h1, h2)
	alice := session(t, s, "alice", "alice-pw-1")
	code, body := do(t, s, request{method: "POST", path: "/api/action", user: "alice", pass: "alice-pw-1",
		origin: strings.TrimSuffix(s.URL(), "/"), csrf: alice.CSRF,
		body: `{"kind":"drain-backend","directors":["d1","d2"],"service":"web","address":"10.0.2.22","reason":"TICKET-7 disk"}`})
	if code != http.StatusOK || strings.Count(body, `"ok":true`) != 2 {
		t.Fatalf("drain: %d %s", code, body)
	}
	for _, h := range []*controltest.Harness{h1, h2} {
		ev, _, _, _ := h.Loop.Events().Since(0)
		var found *announcer.Event
		for i := range ev {
			if ev[i].Subject == "drain backend web/10.0.2.22:*" {
				found = &ev[i]
			}
		}
		if found == nil || found.Reason != "TICKET-7 disk" || !strings.HasSuffix(found.Who, " on behalf of alice") {
			t.Errorf("event log: %+v, want the drain with the reason, by the console on behalf of alice", found)
		}
	}
	waitView(t, s, "both directors show the drain", func(v View) bool {
		b := findBackend(v, "web/10.0.2.22:80")
		return b != nil && b.Cells["d1"].Draining && b.Cells["d2"].Draining
	})
	if onBehalfOfHeader != control.OnBehalfOfHeader {
		t.Errorf("the console's header %q is not the server's %q", onBehalfOfHeader, control.OnBehalfOfHeader)
	}
}

// TestRollbackThroughTheConsole: list, show, diff, preview (dry run, nothing
// changes) and the rollback itself, recorded with alice and the reason.
func TestRollbackThroughTheConsole(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.SetFile(controltest.SecondConfig)
	if _, err := h.Client.Reload(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("api removed after its drain delay", func() bool {
		return h.World.Weight(controltest.APIKey(), netip.MustParseAddrPort("10.0.2.31:443")) < 0
	})
	s := startConsole(t, Options{UsersFile: usersFile(t), AllowActions: true}, h)
	get := func(path string) string {
		t.Helper()
		code, body := do(t, s, request{method: "GET", path: path, user: "bob", pass: "bob-pw-123"})
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return body
	}
	if list := get("/api/configs?director=d1"); !strings.Contains(list, `"running":2`) || !strings.Contains(list, `"version":1`) {
		t.Errorf("configs: %s", list)
	}
	if show := get("/api/config?director=d1&version=1"); !strings.Contains(show, "198.18.0.11") {
		t.Errorf("show 1: %s", show)
	}
	var d diffView
	if err := json.Unmarshal([]byte(get("/api/diff?director=d1&a=1&b=2")), &d); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, h := range d.Hunks {
		for _, l := range h.Lines {
			text.WriteString(string(rune(l.Op)) + l.Text + "\n")
		}
	}
	if !strings.Contains(text.String(), "-  - name: api\n") || !strings.Contains(text.String(), "+      - { address: 10.0.2.23 }\n") {
		t.Errorf("diff 1..2:\n%s", text.String())
	}
	preview := get("/api/rollback/preview?director=d1&version=1")
	if !strings.Contains(preview, `"action":"add","kind":"service","subject":"tcp/198.18.0.11:443"`) || !strings.Contains(preview, `"text":"  - name: api"`) {
		t.Errorf("preview: %s", preview)
	}
	if v := h.Loop.Status().Config.Version; v != 2 {
		t.Fatalf("the preview changed the running version to %d", v)
	}
	alice := session(t, s, "alice", "alice-pw-1")
	code, body := do(t, s, request{method: "POST", path: "/api/rollback", user: "alice", pass: "alice-pw-1",
		origin: strings.TrimSuffix(s.URL(), "/"), csrf: alice.CSRF, body: `{"director":"d1","version":1,"reason":"api was removed by mistake"}`})
	if code != http.StatusOK || !strings.Contains(body, `"version":3`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	ev, _, _, _ := h.Loop.Events().Since(0)
	last := ev[len(ev)-1]
	for i := range ev {
		if ev[i].Kind == announcer.EventReload {
			last = ev[i]
		}
	}
	if last.Reason != "rollback to version 1: api was removed by mistake" || !strings.HasSuffix(last.Who, "on behalf of alice") {
		t.Errorf("rollback event = %+v", last)
	}
}

// waitView polls the console's view (bounded).
func waitView(t *testing.T, s *Server, what string, cond func(View) bool) View {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := s.view()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(v, "", " ")
			t.Fatalf("timed out waiting for %s; view:\n%s", what, bytes.TrimSpace(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func findBackend(v View, key string) *BackendRow {
	for i := range v.Services {
		for j := range v.Services[i].Backends {
			if v.Services[i].Backends[j].Key == key {
				return &v.Services[i].Backends[j]
			}
		}
	}
	return nil
}

// TestTLS: beyond loopback the console serves HTTPS with the given
// certificate, and plain HTTP gets nothing useful.
func TestTLS(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	dir := t.TempDir()
	ca := controltest.NewCA(t, "console test CA")
	cert, key := controltest.WritePair(t, dir, "console", ca.Issue(t, "127.0.0.1", true))
	s := startConsole(t, Options{UsersFile: usersFile(t), TLSCert: cert, TLSKey: key}, h)
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", s.URL()+"api/session", nil)
	req.SetBasicAuth("bob", "bob-pw-123")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("https: %s, HSTS %q", resp.Status, resp.Header.Get("Strict-Transport-Security"))
	}
	plain := "http://" + strings.TrimPrefix(s.URL(), "https://") + "api/session"
	if resp, err := http.Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200")
		}
	}
}
