package console

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles a user can have.
const (
	// RoleRead sees everything and changes nothing.
	RoleRead = "read"
	// RoleOperate may also act (drain, weights, VIPs, rollback), when the
	// console itself allows actions.
	RoleOperate = "operate"
)

// user is one account of the users file.
type user struct {
	name string
	hash []byte
	role string
}

// users are the accounts, by name.
type users map[string]user

// LoadUsers reads a users file: one "name:bcrypt-hash[:role]" per line (the
// first two fields are what `htpasswd -nB name` prints), role "read" (the
// default) or "operate"; blank lines and lines starting with # are
// skipped. Errors name the file and line.
func LoadUsers(path string) (users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	out := users{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		u, err := parseUser(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if _, dup := out[u.name]; dup {
			return nil, fmt.Errorf("%s:%d: user %q is listed twice", path, n, u.name)
		}
		out[u.name] = u
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("users file %s lists no user: add lines name:hash[:role] (hash from `directorctl console hash-password`)", path)
	}
	return out, nil
}

func parseUser(line string) (user, error) {
	parts := strings.Split(line, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return user{}, fmt.Errorf("want name:bcrypt-hash[:role], got %d fields", len(parts))
	}
	u := user{name: parts[0], hash: []byte(parts[1]), role: RoleRead}
	if len(parts) == 3 {
		u.role = parts[2]
	}
	if u.name == "" || strings.ContainsAny(u.name, " \t") {
		return user{}, fmt.Errorf("user name %q is empty or has blanks", u.name)
	}
	if _, err := bcrypt.Cost(u.hash); err != nil {
		return user{}, fmt.Errorf("user %s: the password hash is not bcrypt (%v): make one with `directorctl console hash-password`", u.name, err)
	}
	if u.role != RoleRead && u.role != RoleOperate {
		return user{}, fmt.Errorf("user %s: role %q: use read or operate", u.name, u.role)
	}
	return u, nil
}

// HashPassword returns the bcrypt hash of a password for the users file.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", fmt.Errorf("the password has %d characters: use at least 8", len(password))
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// identity is who made a request.
type identity struct {
	name string // "" for anonymous loopback access
	role string
}

// canAct reports whether the identity may change anything.
func (id identity) canAct() bool { return id.name != "" && id.role == RoleOperate }

// authenticate checks HTTP basic credentials. Without a users file every
// request is anonymous and read-only (the console then only listens on
// loopback). ok is false when credentials are missing or wrong.
func (s *Server) authenticate(r *http.Request) (identity, bool) {
	if s.users == nil {
		return identity{role: RoleRead}, true
	}
	name, pass, has := r.BasicAuth()
	if !has {
		return identity{}, false
	}
	u, known := s.users[name]
	if known && s.verified.ok(name, pass) {
		return identity{name: u.name, role: u.role}, true
	}
	hash := u.hash
	if !known {
		hash = s.dummyHash // a wrong name costs as much time as a wrong password
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(pass)); err != nil || !known {
		return identity{}, false
	}
	s.verified.add(name, pass)
	return identity{name: u.name, role: u.role}, true
}

// verifiedCacheTTL is how long a checked password is remembered: the page
// makes many requests, and bcrypt is slow on purpose. Wrong passwords are
// never remembered, so guessing stays slow.
const verifiedCacheTTL = time.Minute

// verifiedCache remembers recently verified credentials by a keyed hash
// (never the password itself).
type verifiedCache struct {
	key []byte
	mu  sync.Mutex
	m   map[[32]byte]time.Time
}

func (c *verifiedCache) sum(name, pass string) [32]byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(name + "\x00" + pass))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (c *verifiedCache) ok(name, pass string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, found := c.m[c.sum(name, pass)]
	return found && time.Since(t) < verifiedCacheTTL
}

func (c *verifiedCache) add(name, pass string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 1000 {
		c.m = map[[32]byte]time.Time{}
	}
	c.m[c.sum(name, pass)] = time.Now()
}

// csrfToken is the token the page must send with every action: an HMAC of
// the user's name under a key that lives as long as the process.
func (s *Server) csrfToken(id identity) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf\x00" + id.name))
	return hex.EncodeToString(m.Sum(nil))
}

// checkAction refuses an action that is not allowed or could be forged:
// the status code and message, or 0 when it may go ahead. A read-only
// identity gets 403 whatever else the request carries.
func (s *Server) checkAction(r *http.Request, id identity) (int, string) {
	switch {
	case !s.allowActions:
		return http.StatusForbidden, "this console is read-only: start it with --allow-actions to enable actions"
	case id.name == "":
		return http.StatusForbidden, "actions need a signed-in user: start the console with --users"
	case id.role != RoleOperate:
		return http.StatusForbidden, fmt.Sprintf("user %s is read-only: give it the operate role in the users file", id.name)
	case r.Method != http.MethodPost:
		return http.StatusMethodNotAllowed, "actions are POST requests"
	}
	if !sameOrigin(r) {
		return http.StatusForbidden, "cross-origin request refused: actions must come from the console's own page"
	}
	if got := r.Header.Get("X-CSRF-Token"); subtle.ConstantTimeCompare([]byte(got), []byte(s.csrfToken(id))) != 1 {
		return http.StatusForbidden, "missing or wrong X-CSRF-Token: reload the page"
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return http.StatusUnsupportedMediaType, "actions are JSON: Content-Type application/json"
	}
	return 0, ""
}

// sameOrigin requires an Origin header naming this console (scheme and
// host as the browser reached it), and refuses what the browser marks as
// cross-site.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host) && u.Path == "" && u.User == nil
}
