package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
)

func TestFromAnnouncer(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		in   announcer.Event
		want Event
		ok   bool
	}{
		{announcer.Event{Kind: announcer.EventHealth, Subject: "tcp 10.0.2.21:80", From: "up", To: "down", Reason: "refused"},
			Event{Kind: "backend", Subject: "tcp 10.0.2.21:80", From: "up", To: "down", Reason: "refused"}, true},
		{announcer.Event{Kind: announcer.EventHealth, Subject: "tcp 10.0.2.21:80", From: "unknown", To: "up"}, Event{}, false},
		{announcer.Event{Kind: announcer.EventHealth, Subject: "tcp 10.0.2.21:80", From: "unknown", To: "down"},
			Event{Kind: "backend", Subject: "tcp 10.0.2.21:80", From: "unknown", To: "down"}, true},
		{announcer.Event{Kind: announcer.EventVIP, Subject: "198.18.0.10", From: "advertised", To: "withdrawn", Reason: "below min_healthy 0/2"},
			Event{Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn", Reason: "below min_healthy 0/2"}, true},
		{announcer.Event{Kind: announcer.EventPeer, Subject: "10.0.1.1", From: "openconfirm", To: "established"},
			Event{Kind: "peer", Subject: "10.0.1.1", From: "down", To: "up"}, true},
		{announcer.Event{Kind: announcer.EventPeer, Subject: "10.0.1.1", From: "established", To: "idle", Reason: "hold timer expired"},
			Event{Kind: "peer", Subject: "10.0.1.1", From: "up", To: "down", Reason: "hold timer expired"}, true},
		{announcer.Event{Kind: announcer.EventPeer, Subject: "10.0.1.1", From: "idle", To: "active"}, Event{}, false},
		{announcer.Event{Kind: announcer.EventReload, Subject: "/etc/d.yaml", To: "rejected", Reason: "line 3: bad"},
			Event{Kind: "reload", Subject: "/etc/d.yaml", To: "rejected", Reason: "line 3: bad"}, true},
		{announcer.Event{Kind: announcer.EventReload, Subject: "/etc/d.yaml", To: "version 2 (abc)"}, Event{}, false},
		{announcer.Event{Kind: announcer.EventOverride, Subject: "drain director", Reason: "kernel update", Who: "uid=0 pid=1"},
			Event{Kind: "director", Subject: "d1", To: "drained", Reason: "kernel update", Who: "uid=0 pid=1"}, true},
		{announcer.Event{Kind: announcer.EventOverride, Subject: "undrain director", Who: "alice"},
			Event{Kind: "director", Subject: "d1", From: "drained", To: "undrained", Who: "alice"}, true},
		{announcer.Event{Kind: announcer.EventOverride, Subject: "drain backend */10.0.2.21:*"}, Event{}, false},
		{announcer.Event{Kind: announcer.EventDirector, Subject: "d1", From: "normal", To: "withdrawn", Reason: "passes failing"},
			Event{Kind: "director", Subject: "d1", From: "normal", To: "withdrawn", Reason: "passes failing"}, true},
	} {
		tc.in.Time = at
		got, ok := FromAnnouncer("d1", tc.in)
		if ok != tc.ok {
			t.Errorf("%+v: notified %t, want %t", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		tc.want.Director, tc.want.Time = "d1", at
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.in, d)
		}
	}
	long := strings.Repeat("é", maxReason)
	if got, _ := FromAnnouncer("d1", announcer.Event{Kind: announcer.EventReload, To: "rejected", Reason: long}); len(got.Reason) > maxReason+20 || !strings.HasSuffix(got.Reason, "(cut)") {
		t.Errorf("a long reason is not cut: %d bytes", len(got.Reason))
	}
}

// TestGroupingMergesSubjectsAndDirectors: one line per subject, with the
// directors that saw it and the number of changes.
func TestGroupingMergesSubjectsAndDirectors(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	b := newBuilder()
	for i, d := range []string{"d2", "d1", "d3"} {
		b.add(Event{Director: d, Time: t0.Add(time.Duration(i) * time.Second), Kind: "backend", Subject: "tcp 10.0.2.21:80", From: "up", To: "down"})
	}
	b.add(Event{Director: "d1", Time: t0.Add(5 * time.Second), Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn"})
	for i := range 6 {
		from, to := "up", "down"
		if i%2 == 1 {
			from, to = to, from
		}
		b.add(Event{Director: "d1", Time: t0.Add(time.Duration(10+i) * time.Second), Kind: "backend", Subject: "tcp 10.0.2.22:80", From: from, To: to})
	}
	m := b.message("d1")
	if len(m.Entries) != 3 {
		t.Fatalf("entries = %+v", m.Entries)
	}
	first := m.Entries[0]
	if first.Line() != "backend tcp 10.0.2.21:80: up -> down (3 changes) on d1,d2,d3" {
		t.Errorf("line = %q", first.Line())
	}
	if flap := m.Entries[2].Line(); flap != "backend tcp 10.0.2.22:80: up, flapped (6 changes, now up) on d1" {
		t.Errorf("flapping line = %q", flap)
	}
	if !m.Since.Equal(t0) || !m.Until.Equal(t0.Add(15*time.Second)) {
		t.Errorf("since %v until %v", m.Since, m.Until)
	}
	if !strings.HasPrefix(m.Summary, "[d1] 3 changes: backend tcp 10.0.2.21:80 down (3 changes) on d1,d2,d3, vip 198.18.0.10 withdrawn") {
		t.Errorf("summary = %q", m.Summary)
	}
	if f := b.filtered([]string{"vip"}).message("d1"); len(f.Entries) != 1 || f.Entries[0].Kind != "vip" {
		t.Errorf("filtered to vip: %+v", f.Entries)
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(0, 0)
	b := newBucket(2, time.Minute, t0)
	for i := range 2 {
		if w := b.take(t0); w != 0 {
			t.Fatalf("token %d: wait %s", i, w)
		}
	}
	if w := b.take(t0.Add(15 * time.Second)); w != 45*time.Second {
		t.Errorf("empty bucket: wait %s, want 45s", w)
	}
	if w := b.take(t0.Add(time.Minute)); w != 0 {
		t.Errorf("after a minute: wait %s, want a token", w)
	}
	// Refills that add up to a whole token in floating point give exactly
	// one token, not a free one.
	b = newBucket(5, 5*time.Minute, t0)
	granted := 0
	for s := 10; s <= 3600; s += 10 {
		now := t0.Add(time.Duration(s) * time.Second)
		for w := b.take(now); ; w = b.take(now) {
			if w == 0 {
				granted++
				break
			}
			now = now.Add(w)
			s = int(now.Sub(t0) / time.Second)
		}
	}
	if granted > 5+12+1 {
		t.Errorf("%d tokens in an hour from a bucket of 5 plus one per 5 minutes", granted)
	}
}

// recorder is a stateful fake channel: it keeps what it was sent and fails
// while told to.
type recorder struct {
	mu    sync.Mutex
	msgs  []Message
	times []time.Time
	fail  int // fail this many attempts
	tries int
}

func (r *recorder) name() string { return "recorder" }

func (r *recorder) send(_ context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	r.times = append(r.times, time.Now())
	if r.fail > 0 {
		r.fail--
		return errors.New("receiver down")
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) sent() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// startWith runs a notifier with one recorder channel inside a synctest bubble.
func startWith(t *testing.T, ctx context.Context, cfg config.Notify, r *recorder) *Notifier {
	t.Helper()
	n := &Notifier{director: "d1", log: discard(), in: make(chan Event, queueSize), updates: make(chan config.Notify, 1),
		cfg: cfg, ready: make(chan struct{})}
	d := config.Delivery{Timeout: time.Second, MaxAttempts: 5, Backoff: time.Second, Events: config.NotifyKinds}
	n.testSender = &builtSender{r, d}
	go n.Run(ctx)
	<-n.Ready()
	return n
}

// TestFlappingBackendIsRateLimited: a real server flapping every 2 s for an
// hour (1,800 changes) gives at most burst + hour/every messages, and every
// change is accounted for in them.
func TestFlappingBackendIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := &recorder{}
		cfg := config.Notify{GroupWindow: 10 * time.Second, Burst: 5, Every: 5 * time.Minute}
		n := startWith(t, ctx, cfg, r)
		const changes = 1800
		for i := range changes {
			from, to := "up", "down"
			if i%2 == 1 {
				from, to = to, from
			}
			n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "backend", Subject: "tcp 10.0.2.21:80", From: from, To: to})
			time.Sleep(2 * time.Second)
		}
		time.Sleep(10 * time.Minute) // the last digest
		synctest.Wait()
		msgs := r.sent()
		if limit := 5 + 60/5 + 2; len(msgs) > limit || len(msgs) < 5 {
			t.Errorf("%d messages for %d changes in an hour, want between 5 and %d", len(msgs), changes, limit)
		}
		total := 0
		for _, m := range msgs {
			if len(m.Entries) != 1 {
				t.Fatalf("a message with %d entries: %+v", len(m.Entries), m)
			}
			total += m.Entries[0].Changes
		}
		if total != changes {
			t.Errorf("messages account for %d changes, want %d", total, changes)
		}
		if last := msgs[len(msgs)-1]; !strings.Contains(last.Entries[0].Line(), "changes") {
			t.Errorf("the digest does not say it merged changes: %q", last.Entries[0].Line())
		}
	})
}

// TestGroupWindow: changes within the window are one message; a change
// after it starts the next one.
func TestGroupWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := &recorder{}
		n := startWith(t, ctx, config.Notify{GroupWindow: 10 * time.Second, Burst: 5, Every: time.Minute}, r)
		for _, d := range []string{"d1", "d2", "d3"} {
			n.Submit(Event{Director: d, Time: time.Now(), Kind: "backend", Subject: "tcp 10.0.2.21:80", From: "up", To: "down"})
			time.Sleep(time.Second)
		}
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if got := r.sent(); len(got) != 1 || got[0].Entries[0].Line() != "backend tcp 10.0.2.21:80: up -> down (3 changes) on d1,d2,d3" {
			t.Fatalf("after the window: %+v", got)
		}
		n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn"})
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if got := r.sent(); len(got) != 2 || got[1].Entries[0].Kind != "vip" {
			t.Fatalf("second window: %+v", got)
		}
	})
}

// TestRetryCarriesLaterChanges: while the receiver is down the message is
// retried with a doubling backoff, and the retry that succeeds also carries
// the changes made meanwhile.
func TestRetryCarriesLaterChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := &recorder{fail: 3}
		n := startWith(t, ctx, config.Notify{GroupWindow: time.Second, Burst: 100, Every: time.Second}, r)
		n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "backend", Subject: "tcp 10.0.2.21:80", From: "up", To: "down"})
		time.Sleep(2 * time.Second)
		n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn"})
		time.Sleep(time.Minute)
		synctest.Wait()
		got := r.sent()
		if len(got) != 1 || len(got[0].Entries) != 2 {
			t.Fatalf("delivered %+v, want one message with both changes", got)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.tries != 4 {
			t.Errorf("%d attempts, want 4", r.tries)
		}
		var gaps []time.Duration
		for i := 1; i < len(r.times); i++ {
			gaps = append(gaps, r.times[i].Sub(r.times[i-1]))
		}
		if d := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, gaps); d != "" {
			t.Errorf("retry gaps (-want +got):\n%s", d)
		}
	})
}

// TestSubmitNeverBlocks: with nobody draining the queue, Submit returns and
// counts what did not fit as lost, which the next message reports.
func TestSubmitNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, err := New(config.Notify{GroupWindow: time.Second, Burst: 1, Every: time.Second}, "d1", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range queueSize + 10 {
			n.Submit(Event{Kind: "backend", Subject: fmt.Sprint(i)})
		}
		if got := n.lost.Load(); got != 10 {
			t.Errorf("lost = %d, want 10", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := &recorder{}
		n.testSender = &builtSender{r, config.Delivery{Timeout: time.Second, MaxAttempts: 1, Backoff: time.Second, Events: config.NotifyKinds}}
		go n.Run(ctx)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := r.sent()
		if len(got) != 1 || got[0].Lost != 10 || len(got[0].Entries)+got[0].Omitted != queueSize {
			t.Fatalf("message after the overflow: %d messages, lost %d", len(got), got[0].Lost)
		}
		if !strings.Contains(got[0].Text(), "10 changes were lost") || !strings.Contains(got[0].Text(), "more subjects") {
			t.Errorf("text does not report the loss:\n%s", got[0].Text()[len(got[0].Text())-300:])
		}
	})
}

// TestFollowReadsTheEventLog: events appended to the log reach the notifier
// through Follow, and those not notified are filtered out.
func TestFollowReadsTheEventLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		log := announcer.NewEventLog(16)
		log.Append(announcer.Event{Kind: announcer.EventVIP, Subject: "old", To: "advertised"})
		r := &recorder{}
		n := startWith(t, ctx, config.Notify{GroupWindow: time.Second, Burst: 5, Every: time.Second}, r)
		go Follow(ctx, log, func() string { return "d9" }, n)
		synctest.Wait()
		log.Append(announcer.Event{Time: time.Now(), Kind: announcer.EventHealth, Subject: "tcp 10.0.2.21:80", From: "up", To: "down"})
		log.Append(announcer.Event{Time: time.Now(), Kind: announcer.EventOverride, Subject: "drain backend x"})
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := r.sent()
		if len(got) != 1 || len(got[0].Entries) != 1 || got[0].Entries[0].Subject != "tcp 10.0.2.21:80" ||
			got[0].Entries[0].Directors[0] != "d9" {
			t.Fatalf("sent %+v", got)
		}
	})
}
