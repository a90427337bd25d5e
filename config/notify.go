package config

import (
	"net"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// NotifyKinds are the kinds of change a notification can report, in the
// order messages list them.
var NotifyKinds = []string{"backend", "vip", "peer", "reload", "director"}

// Defaults of the notify section (docs/configuration.md, docs/console.md).
const (
	// DefaultNotifyGroupWindow: changes within this window after the first
	// one go into one message, so a real server seen down by every check at
	// once, or flapping, is one line.
	DefaultNotifyGroupWindow = 10 * time.Second
	// DefaultNotifyBurst and DefaultNotifyEvery: each channel sends at most
	// 5 messages at once, then one per 5 minutes; what happens meanwhile
	// is held and sent as one digest.
	DefaultNotifyBurst = 5
	DefaultNotifyEvery = 5 * time.Minute
	// DefaultNotifyTimeout bounds one delivery attempt.
	DefaultNotifyTimeout = 10 * time.Second
	// DefaultNotifyAttempts and DefaultNotifyBackoff: a failed delivery is
	// retried after 1 s, 2 s, 4 s, ... (at most a minute apart), 8 attempts
	// in all (about 3 minutes).
	DefaultNotifyAttempts = 8
	DefaultNotifyBackoff  = time.Second
)

// Notify configures notifications of state changes (docs/console.md):
// messages go to every channel, grouped over GroupWindow and rate-limited
// per channel. The zero value sends nothing.
type Notify struct {
	// GroupWindow is how long changes are collected into one message.
	GroupWindow time.Duration
	// Burst and Every are each channel's token bucket: Burst messages at
	// once, one more every Every.
	Burst int
	Every time.Duration
	// Events lists the kinds notified (NotifyKinds); every kind by default.
	Events []string
	// Webhooks, Email and Exec are the channels.
	Webhooks []Webhook
	Email    []Email
	Exec     []ExecHook
}

// Delivery is what every channel shares: how one attempt is bounded and how
// failures are retried.
type Delivery struct {
	// Timeout bounds one attempt.
	Timeout time.Duration
	// MaxAttempts is how many attempts a message gets.
	MaxAttempts int
	// Backoff is the first retry delay; it doubles up to a minute.
	Backoff time.Duration
	// Events restricts the channel to these kinds (the section's by default).
	Events []string
}

// Webhook posts each message as JSON, signed with HMAC-SHA256.
type Webhook struct {
	Delivery
	// URL is an http or https URL.
	URL string
	// Secret keys the X-Director-Signature header ("" sends none).
	Secret string
	// CAFile, when set, replaces the system roots for https.
	CAFile string
}

// Email sends each message by SMTP.
type Email struct {
	Delivery
	// Server is host:port.
	Server string
	// TLS is "starttls" (upgrade on a plain port, required), "tls"
	// (implicit, port 465) or "none".
	TLS string
	// CAFile, when set, replaces the system roots.
	CAFile string
	// Username and Password authenticate (AUTH PLAIN) when Username is set.
	Username, Password string
	// From and To are the envelope and header addresses.
	From string
	To   []string
}

// ExecHook runs a command per message, with the message as JSON on stdin
// and DIRECTOR_* environment variables.
type ExecHook struct {
	Delivery
	// Command is the program and its arguments (no shell).
	Command []string
}

// Enabled reports whether any channel is configured.
func (n Notify) Enabled() bool {
	return len(n.Webhooks)+len(n.Email)+len(n.Exec) > 0
}

// Clone returns a deep copy of n.
func (n Notify) Clone() Notify {
	n.Events = slices.Clone(n.Events)
	n.Webhooks = slices.Clone(n.Webhooks)
	n.Email = slices.Clone(n.Email)
	n.Exec = slices.Clone(n.Exec)
	for i := range n.Webhooks {
		n.Webhooks[i].Events = slices.Clone(n.Webhooks[i].Events)
	}
	for i := range n.Email {
		n.Email[i].Events = slices.Clone(n.Email[i].Events)
		n.Email[i].To = slices.Clone(n.Email[i].To)
	}
	for i := range n.Exec {
		n.Exec[i].Events = slices.Clone(n.Exec[i].Events)
		n.Exec[i].Command = slices.Clone(n.Exec[i].Command)
	}
	return n
}

type rawNotify struct {
	GroupWindow *string       `yaml:"group_window"`
	Rate        *rawRate      `yaml:"rate"`
	Events      []*string     `yaml:"events"`
	Webhooks    []*rawWebhook `yaml:"webhooks"`
	Email       []*rawEmail   `yaml:"email"`
	Exec        []*rawExec    `yaml:"exec"`
}

type rawRate struct {
	Burst *int64  `yaml:"burst"`
	Every *string `yaml:"every"`
}

type rawDelivery struct {
	Timeout     *string   `yaml:"timeout"`
	MaxAttempts *int64    `yaml:"max_attempts"`
	Backoff     *string   `yaml:"backoff"`
	Events      []*string `yaml:"events"`
}

type rawWebhook struct {
	URL         *string   `yaml:"url"`
	Secret      *string   `yaml:"secret"`
	SecretFile  *string   `yaml:"secret_file"`
	CAFile      *string   `yaml:"ca_file"`
	Timeout     *string   `yaml:"timeout"`
	MaxAttempts *int64    `yaml:"max_attempts"`
	Backoff     *string   `yaml:"backoff"`
	Events      []*string `yaml:"events"`
}

type rawEmail struct {
	Server       *string   `yaml:"server"`
	TLS          *string   `yaml:"tls"`
	CAFile       *string   `yaml:"ca_file"`
	Username     *string   `yaml:"username"`
	Password     *string   `yaml:"password"`
	PasswordFile *string   `yaml:"password_file"`
	From         *string   `yaml:"from"`
	To           []*string `yaml:"to"`
	Timeout      *string   `yaml:"timeout"`
	MaxAttempts  *int64    `yaml:"max_attempts"`
	Backoff      *string   `yaml:"backoff"`
	Events       []*string `yaml:"events"`
}

type rawExec struct {
	Command     []*string `yaml:"command"`
	Timeout     *string   `yaml:"timeout"`
	MaxAttempts *int64    `yaml:"max_attempts"`
	Backoff     *string   `yaml:"backoff"`
	Events      []*string `yaml:"events"`
}

// notify validates the notify section.
func (v *validator) notify(n *rawNotify) Notify {
	if n == nil {
		return Notify{}
	}
	out := Notify{}
	out.GroupWindow, _ = v.boundedDuration(n.GroupWindow, "notify.group_window", DefaultNotifyGroupWindow, 0, time.Hour)
	out.Burst, out.Every = DefaultNotifyBurst, DefaultNotifyEvery
	if n.Rate != nil {
		b, _ := v.integer(n.Rate.Burst, "notify.rate.burst", DefaultNotifyBurst, 1, 1000)
		out.Burst = int(b)
		out.Every, _ = v.boundedDuration(n.Rate.Every, "notify.rate.every", DefaultNotifyEvery, time.Second, 24*time.Hour)
	}
	out.Events = v.notifyKinds(n.Events, "notify.events", NotifyKinds)
	for i, w := range n.Webhooks {
		out.Webhooks = append(out.Webhooks, v.webhook(w, indexPath("notify.webhooks", i), out.Events))
	}
	for i, e := range n.Email {
		out.Email = append(out.Email, v.email(e, indexPath("notify.email", i), out.Events))
	}
	for i, x := range n.Exec {
		out.Exec = append(out.Exec, v.execHook(x, indexPath("notify.exec", i), out.Events))
	}
	return out
}

// boundedDuration is duration within [lo, hi].
func (v *validator) boundedDuration(p *string, path string, def, lo, hi time.Duration) (time.Duration, bool) {
	d, ok := v.duration(p, path, def)
	if !ok || p == nil {
		return d, ok
	}
	if d < lo || d > hi {
		v.errf(path, "%s is out of range (%s..%s)", *p, lo, hi)
		return def, false
	}
	return d, true
}

// notifyKinds validates a list of notification kinds; absent means def.
func (v *validator) notifyKinds(list []*string, path string, def []string) []string {
	if list == nil {
		return slices.Clone(def)
	}
	var out []string
	for i, p := range list {
		k, ok := v.enum(p, indexPath(path, i), "event kind", "", NotifyKinds)
		if ok && k != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 && !v.failed(path) {
		v.errf(path, "the list is empty: nothing would be sent").hintf("list kinds from %s, or remove the key for all", strings.Join(NotifyKinds, ", "))
	}
	return out
}

// delivery validates the settings every channel shares.
func (v *validator) delivery(r rawDelivery, path string, events []string) Delivery {
	d := Delivery{}
	d.Timeout, _ = v.boundedDuration(r.Timeout, path+".timeout", DefaultNotifyTimeout, 100*time.Millisecond, 10*time.Minute)
	n, _ := v.integer(r.MaxAttempts, path+".max_attempts", DefaultNotifyAttempts, 1, 100)
	d.MaxAttempts = int(n)
	d.Backoff, _ = v.boundedDuration(r.Backoff, path+".backoff", DefaultNotifyBackoff, 10*time.Millisecond, time.Minute)
	d.Events = v.notifyKinds(r.Events, path+".events", events)
	return d
}

func (v *validator) webhook(w *rawWebhook, path string, events []string) Webhook {
	if w == nil {
		v.errf(path, "empty webhook").hintf("give at least url:")
		return Webhook{}
	}
	out := Webhook{Delivery: v.delivery(rawDelivery{w.Timeout, w.MaxAttempts, w.Backoff, w.Events}, path, events)}
	out.URL = v.str(w.URL, "")
	if out.URL == "" {
		v.missing(path+".url", "required: where to POST the messages").hintf("for example https://hooks.example.net/director")
	} else if u, err := url.Parse(out.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(path+".url", "%q is not an http or https URL", out.URL)
	}
	out.Secret = v.secret(w.Secret, w.SecretFile, path, "secret")
	out.CAFile = v.readableFile(w.CAFile, path+".ca_file")
	return out
}

func (v *validator) email(e *rawEmail, path string, events []string) Email {
	if e == nil {
		v.errf(path, "empty email channel").hintf("give at least server:, from: and to:")
		return Email{}
	}
	out := Email{Delivery: v.delivery(rawDelivery{e.Timeout, e.MaxAttempts, e.Backoff, e.Events}, path, events)}
	out.Server = v.str(e.Server, "")
	if out.Server == "" {
		v.missing(path+".server", "required: the SMTP server as host:port").hintf("for example mail.example.net:587")
	} else if h, _, err := net.SplitHostPort(out.Server); err != nil || h == "" {
		v.errf(path+".server", "%q is not host:port", out.Server).hintf("for example mail.example.net:587")
	}
	out.TLS, _ = v.enum(e.TLS, path+".tls", "TLS mode", "starttls", []string{"starttls", "tls", "none"})
	out.CAFile = v.readableFile(e.CAFile, path+".ca_file")
	out.Username = v.str(e.Username, "")
	out.Password = v.secret(e.Password, e.PasswordFile, path, "password")
	if out.Username != "" && out.TLS == "none" {
		v.errf(path+".tls", "tls: none with a username would send the password in clear").hintf("use tls: starttls (port 587) or tls (port 465)")
	}
	if out.Password != "" && out.Username == "" {
		v.errf(path+".username", "a password without a username").hintf("set username:, or remove the password")
	}
	out.From = v.mailAddr(e.From, path+".from")
	for i, p := range e.To {
		if a := v.mailAddr(p, indexPath(path+".to", i)); a != "" {
			out.To = append(out.To, a)
		}
	}
	if len(e.To) == 0 {
		v.missing(path+".to", "required: at least one recipient")
	}
	return out
}

func (v *validator) execHook(x *rawExec, path string, events []string) ExecHook {
	if x == nil {
		v.errf(path, "empty exec hook").hintf("give at least command: [/path/to/program]")
		return ExecHook{}
	}
	out := ExecHook{Delivery: v.delivery(rawDelivery{x.Timeout, x.MaxAttempts, x.Backoff, x.Events}, path, events)}
	for _, p := range x.Command {
		out.Command = append(out.Command, v.str(p, ""))
	}
	switch {
	case len(out.Command) == 0:
		v.missing(path+".command", "required: the program to run and its arguments").hintf("for example [/usr/local/bin/director-notify, --page]")
	case !strings.HasPrefix(out.Command[0], "/"):
		v.errf(path+".command", "%q is not an absolute path", out.Command[0]).hintf("no shell and no PATH lookup: name the program by its full path")
	}
	return out
}

// secret returns an inline secret or the content of its file (trailing
// newlines removed); both at once is an error.
func (v *validator) secret(inline, file *string, path, key string) string {
	switch {
	case inline != nil && file != nil:
		v.errf(path+"."+key+"_file", "both %s and %s_file are set", key, key).hintf("keep one of them")
		return ""
	case inline != nil:
		return *inline
	case file == nil:
		return ""
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		v.errf(path+"."+key+"_file", "cannot read %s: %v", *file, err)
		return ""
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		v.errf(path+"."+key+"_file", "%s is empty", *file)
	}
	return s
}

// readableFile checks an optional file name can be read now.
func (v *validator) readableFile(p *string, path string) string {
	if p == nil {
		return ""
	}
	if _, err := os.Stat(*p); err != nil {
		v.errf(path, "cannot read %s: %v", *p, err)
	}
	return *p
}

// mailAddr checks one bare e-mail address.
func (v *validator) mailAddr(p *string, path string) string {
	if p == nil {
		v.missing(path, "required: an e-mail address")
		return ""
	}
	if _, err := mail.ParseAddress(*p); err != nil {
		v.errf(path, "%q is not an e-mail address: %v", *p, err).hintf("for example ops@example.net or \"Ops\" <ops@example.net>")
		return ""
	}
	return strings.TrimSpace(*p)
}
