package notify

import (
	"crypto/tls"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/controltest"
)

// mailServer is a real SMTP server (go-smtp) on loopback: STARTTLS with a
// certificate from a test CA, AUTH PLAIN with one user, and a mailbox.
type mailServer struct {
	addr   string
	caFile string
	srv    *smtp.Server

	mu    sync.Mutex
	mails []delivered
	auths []string
}

type delivered struct {
	from, user string
	to         []string
	tls        bool
	data       []byte
}

// newMailServer starts the server; withTLS false offers no STARTTLS.
func newMailServer(t *testing.T, withTLS bool) *mailServer {
	t.Helper()
	m := &mailServer{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{m: m, c: c}, nil
	}))
	s.Domain = "mail.test"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	if withTLS {
		ca := controltest.NewCA(t, "mail test CA")
		m.caFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(m.caFile, ca.PEM, 0o600); err != nil {
			t.Fatal(err)
		}
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", true)}}
	} else {
		s.AllowInsecureAuth = true
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr, m.srv = lis.Addr().String(), s
	go s.Serve(lis)
	t.Cleanup(func() { s.Close() })
	return m
}

func (m *mailServer) delivered() []delivered {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]delivered(nil), m.mails...)
}

type mailSession struct {
	m    *mailServer
	c    *smtp.Conn
	user string
	cur  delivered
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.m.mu.Lock()
		s.m.auths = append(s.m.auths, user)
		s.m.mu.Unlock()
		if user != "alerts" || pass != "pw-123" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "invalid credentials"}
		}
		s.user = user
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.cur = delivered{from: from, user: s.user, tls: isTLS}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, s.cur)
	s.m.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.cur = delivered{} }
func (s *mailSession) Logout() error { return nil }

func emailChannel(m *mailServer, password string) config.Email {
	return config.Email{Delivery: quick(), Server: m.addr, TLS: "starttls", CAFile: m.caFile,
		Username: "alerts", Password: password, From: "directord <directord@example.net>", To: []string{"ops@example.net", "noc@example.net"}}
}

// TestEmailOverSTARTTLSWithAuth: the mail goes over STARTTLS, authenticated,
// to every recipient, with the summary as subject and a line per change.
func TestEmailOverSTARTTLSWithAuth(t *testing.T) {
	m := newMailServer(t, true)
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 5, Every: time.Minute,
		Email: []config.Email{emailChannel(m, "pw-123")}})
	n.Submit(down("tcp 10.0.2.21:80"))
	n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "director", Subject: "d1", To: "drained", Reason: "kernel update", Who: "alice"})
	waitUntil(t, "a mail", func() bool { return len(m.delivered()) == 1 })
	d := m.delivered()[0]
	if !d.tls || d.user != "alerts" || d.from != "directord@example.net" || strings.Join(d.to, ",") != "ops@example.net,noc@example.net" {
		t.Errorf("envelope: tls %t user %q from %q to %v", d.tls, d.user, d.from, d.to)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(d.data)))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if subject != "[d1] 2 changes: backend tcp 10.0.2.21:80 down, director d1 drained" {
		t.Errorf("subject = %q", subject)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	for _, want := range []string{"backend tcp 10.0.2.21:80: up -> down on d1 (connect: connection refused)",
		"director d1: - -> drained on d1 by alice (kernel update)"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

// TestEmailRefusals: a server without STARTTLS gets nothing (no fallback to
// plain text, so the password is never sent in clear), and a wrong password
// is a permanent failure, not retried.
func TestEmailRefusals(t *testing.T) {
	plain := newMailServer(t, false)
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 50, Every: time.Second,
		Email: []config.Email{emailChannel(plain, "pw-123")}})
	n.Submit(down("tcp 10.0.2.21:80"))
	name := "email ops@example.net,noc@example.net via " + plain.addr
	waitUntil(t, "an attempt", func() bool { return n.Stats()[name].Attempts >= 1 })
	if s := n.Stats()[name]; !strings.Contains(s.LastError, "does not offer STARTTLS") {
		t.Errorf("without STARTTLS: %+v", s)
	}
	plain.mu.Lock()
	if len(plain.auths) != 0 || len(plain.mails) != 0 {
		t.Errorf("credentials or mail sent without TLS: auths %v, %d mails", plain.auths, len(plain.mails))
	}
	plain.mu.Unlock()

	tlsSrv := newMailServer(t, true)
	n2 := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 50, Every: time.Second,
		Email: []config.Email{emailChannel(tlsSrv, "wrong")}})
	n2.Submit(down("tcp 10.0.2.21:80"))
	name2 := "email ops@example.net,noc@example.net via " + tlsSrv.addr
	waitUntil(t, "the wrong password given up", func() bool { return n2.Stats()[name2].Failed == 1 })
	if s := n2.Stats()[name2]; s.Attempts != 1 || !strings.Contains(s.LastError, "AUTH as alerts") {
		t.Errorf("wrong password: %+v", s)
	}
}
