package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
)

// receiver is a real HTTP server on loopback that records what it was
// posted and answers with a status the test sets. It can be stopped and
// started again on the same port.
type receiver struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	srv    *http.Server
	got    []posted
	status int
	notify chan struct{}
}

type posted struct {
	header http.Header
	body   []byte
	msg    Message
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, addr: "127.0.0.1:0", status: http.StatusOK, notify: make(chan struct{}, 100)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) start() {
	r.t.Helper()
	var lis net.Listener
	var err error
	for range 100 { // the port may be in TIME_WAIT briefly after stop
		if lis, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = lis.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(lis)
}

func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var m Message
	json.Unmarshal(body, &m)
	r.mu.Lock()
	status := r.status
	if status < 300 {
		r.got = append(r.got, posted{req.Header.Clone(), body, m})
	}
	r.mu.Unlock()
	w.WriteHeader(status)
	r.notify <- struct{}{}
}

func (r *receiver) setStatus(s int) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

func (r *receiver) received() []posted {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]posted(nil), r.got...)
}

// waitUntil polls cond (bounded) on a condition of the real world.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runNotifier starts a notifier for cfg until the test ends.
func runNotifier(t *testing.T, cfg config.Notify) *Notifier {
	t.Helper()
	n, err := New(cfg, "d1", discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-n.Ready()
	return n
}

func quick(events ...string) config.Delivery {
	if events == nil {
		events = config.NotifyKinds
	}
	return config.Delivery{Timeout: 2 * time.Second, MaxAttempts: 30, Backoff: 20 * time.Millisecond, Events: events}
}

func down(subject string) Event {
	return Event{Director: "d1", Time: time.Now(), Kind: "backend", Subject: subject, From: "up", To: "down", Reason: "connect: connection refused"}
}

// TestWebhookPostsSignedJSON: the receiver gets the message as JSON with a
// signature it can verify with the shared secret, and nothing else reads
// the secret.
func TestWebhookPostsSignedJSON(t *testing.T) {
	r := newReceiver(t)
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 5, Every: time.Minute,
		Webhooks: []config.Webhook{{Delivery: quick(), URL: r.url(), Secret: "s3cret"}}})
	n.Submit(down("tcp 10.0.2.21:80"))
	waitUntil(t, "a post", func() bool { return len(r.received()) == 1 })
	p := r.received()[0]
	if got := p.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if p.header.Get(DeliveryHeader) == "" {
		t.Errorf("no %s header", DeliveryHeader)
	}
	sig := p.header.Get(SignatureHeader)
	var ts string
	for _, part := range strings.Split(sig, ",") {
		if v, ok := strings.CutPrefix(part, "t="); ok {
			ts = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("signature %q has no recent timestamp", sig)
	}
	if want := Sign([]byte("s3cret"), time.Unix(sec, 0), p.body); !hmac.Equal([]byte(sig), []byte(want)) {
		t.Errorf("signature %q does not verify (want %q)", sig, want)
	}
	if wrong := Sign([]byte("other"), time.Unix(sec, 0), p.body); wrong == sig {
		t.Errorf("the signature does not depend on the secret")
	}
	m := p.msg
	if m.Version != 1 || m.Director != "d1" || len(m.Entries) != 1 ||
		m.Entries[0].Line() != "backend tcp 10.0.2.21:80: up -> down on d1 (connect: connection refused)" {
		t.Errorf("message = %+v", m)
	}
	if m.Summary != "[d1] backend tcp 10.0.2.21:80 down" {
		t.Errorf("summary = %q", m.Summary)
	}
}

// TestWebhookReceiverDownAndBack: while the receiver is down the message is
// retried; when it comes back on the same address it gets one message with
// the change from before and the one made while it was down.
func TestWebhookReceiverDownAndBack(t *testing.T) {
	r := newReceiver(t)
	r.stop()
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 5, Every: time.Minute,
		Webhooks: []config.Webhook{{Delivery: quick(), URL: r.url()}}})
	n.Submit(down("tcp 10.0.2.21:80"))
	stats := func() Stats { return n.Stats()["webhook "+r.url()] }
	waitUntil(t, "failed attempts", func() bool { return stats().Attempts >= 2 })
	if s := stats(); s.Sent != 0 || !strings.Contains(s.LastError, "connection refused") {
		t.Fatalf("while down: %+v", s)
	}
	n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn"})
	time.Sleep(100 * time.Millisecond) // let the second change be grouped while the receiver is still down
	r.start()
	waitUntil(t, "the message after the receiver came back", func() bool { return stats().Sent == 1 })
	got := r.received()
	if len(got) != 1 {
		t.Fatalf("%d messages, want 1", len(got))
	}
	if e := got[0].msg.Entries; len(e) != 2 || e[0].Kind != "backend" || e[1].Kind != "vip" {
		t.Errorf("entries = %+v, want the backend and the VIP change", e)
	}
	if s := stats(); s.Sent != 1 || s.Retries < 1 || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// TestWebhookAnswers: 503 is retried until it succeeds; 400 is not retried.
func TestWebhookAnswers(t *testing.T) {
	r := newReceiver(t)
	r.setStatus(http.StatusServiceUnavailable)
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 50, Every: time.Second,
		Webhooks: []config.Webhook{{Delivery: quick(), URL: r.url()}}})
	stats := func() Stats { return n.Stats()["webhook "+r.url()] }
	n.Submit(down("tcp 10.0.2.21:80"))
	waitUntil(t, "503 retried", func() bool { return stats().Attempts >= 3 })
	r.setStatus(http.StatusNoContent)
	waitUntil(t, "delivered after 503s", func() bool { return stats().Sent == 1 })

	r.setStatus(http.StatusBadRequest)
	n.Submit(down("tcp 10.0.2.22:80"))
	waitUntil(t, "a 400 given up", func() bool { return stats().Failed == 1 })
	before := stats().Attempts
	time.Sleep(200 * time.Millisecond)
	if s := stats(); s.Attempts != before || !strings.Contains(s.LastError, "400") {
		t.Errorf("a 400 was retried: %+v", s)
	}
}
