package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
)

// email sends messages over SMTP.
type email struct {
	cfg  config.Email
	host string
	tls  *tls.Config
	from string // envelope sender
	to   []string
}

func newEmail(c config.Email) (*email, error) {
	host, _, err := net.SplitHostPort(c.Server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", c.Server, err)
	}
	e := &email{cfg: c, host: host, tls: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}}
	if c.CAFile != "" {
		if e.tls.RootCAs, err = loadPool(c.CAFile); err != nil {
			return nil, err
		}
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", c.From, err)
	}
	e.from = from.Address
	for _, t := range c.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to %q: %w", t, err)
		}
		e.to = append(e.to, a.Address)
	}
	return e, nil
}

func (e *email) name() string { return "email " + strings.Join(e.to, ",") + " via " + e.cfg.Server }

// send runs one SMTP transaction. With tls: starttls a server that does not
// offer STARTTLS is an error, never a silent fallback to plain text. A 5xx
// reply is permanent.
func (e *email) send(ctx context.Context, m Message) error {
	c, err := e.dial(ctx)
	if err != nil {
		return classify(err)
	}
	defer c.Close()
	if err := e.transaction(c, m); err != nil {
		return classify(fmt.Errorf("smtp %s: %w", e.cfg.Server, err))
	}
	return nil
}

// classify marks a 5xx SMTP reply (bad credentials, refused recipient) as
// permanent; anything else is worth a retry.
func classify(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) && tp.Code >= 500 {
		return permanentError{err}
	}
	return err
}

// dial connects, greets and secures the session as configured.
func (e *email) dial(ctx context.Context) (*smtp.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("smtp %s: %w", e.cfg.Server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if e.cfg.TLS == "tls" {
		conn = tls.Client(conn, e.tls)
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("smtp %s: greeting: %w", e.cfg.Server, err)
	}
	if err := c.Hello(helloName()); err != nil {
		c.Close()
		return nil, fmt.Errorf("smtp %s: EHLO: %w", e.cfg.Server, err)
	}
	if e.cfg.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			c.Close()
			return nil, fmt.Errorf("smtp %s does not offer STARTTLS: use tls: tls for port 465, or a server that offers it", e.cfg.Server)
		}
		if err := c.StartTLS(e.tls); err != nil {
			c.Close()
			return nil, fmt.Errorf("smtp %s: STARTTLS: %w", e.cfg.Server, err)
		}
	}
	if e.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.cfg.Username, e.cfg.Password, e.host)); err != nil {
			c.Close()
			return nil, fmt.Errorf("smtp %s: AUTH as %s: %w", e.cfg.Server, e.cfg.Username, err)
		}
	}
	return c, nil
}

// transaction sends one mail and quits.
func (e *email) transaction(c *smtp.Client, m Message) error {
	if err := c.Mail(e.from); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, to := range e.to {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(e.render(m)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return c.Quit()
}

// render builds the mail: headers and a quoted-printable text body.
func (e *email) render(m Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", e.cfg.From)
	h("To", strings.Join(e.cfg.To, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Summary))
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", "<"+deliveryID(m)+"."+time.Now().Format("20060102150405.000000000")+"@"+helloName()+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `text/plain; charset="utf-8"`)
	h("Content-Transfer-Encoding", "quoted-printable")
	h("X-Director", m.Director)
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(m.Text(), "\n", "\r\n")))
	qp.Close()
	return b.Bytes()
}

// helloName is this host's name for EHLO ("localhost" if unknown).
func helloName() string {
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		return h
	}
	return "localhost"
}
