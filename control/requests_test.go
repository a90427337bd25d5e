package control_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
	"github.com/anycast-director/director/health"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// yearAndASecond is one second more than any override may last, and
// tooLong the one message every override path refuses it with.
const (
	yearAndASecond = 8760*time.Hour + time.Second
	tooLong        = "expires_after: expiry 8760h0m1s is longer than a year (8760h): leave the expiry out for an override that never lapses"
)

func TestMalformedRequestsAreRefusedWithAHintAndChangeNothing(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	web := func(addr string) *directorv1.BackendRef { return &directorv1.BackendRef{Service: "web", Address: addr} }
	tests := []struct {
		name string
		call func(ctx context.Context, c directorv1.DirectorClient) error
		code codes.Code
		msg  string
	}{
		{"bad backend address", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: web("10.0.0.300")})
			return err
		}, codes.InvalidArgument, `backend address "10.0.0.300" is not an IP address: use the address as in the configuration, e.g. 10.0.2.21`},
		{"missing backend", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{})
			return err
		}, codes.InvalidArgument, "backend.address is required"},
		{"port out of range", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: &directorv1.BackendRef{Address: "10.0.2.21", Port: 70000}})
			return err
		}, codes.InvalidArgument, "backend port 70000 is out of range: use 1 to 65535, or 0 for every port"},
		{"unknown service", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: &directorv1.BackendRef{Service: "webb", Address: "10.0.2.21"}})
			return err
		}, codes.NotFound, `no service named "webb": use one of web, api`},
		{"backend not in the service", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: web("10.0.2.31")})
			return err
		}, codes.NotFound, "no backend matches web/10.0.2.31:* in the running configuration"},
		{"negative expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: web("10.0.2.21"), ExpiresAfter: durationpb.New(-time.Minute)})
			return err
		}, codes.InvalidArgument, "expires_after: expiry -1m0s is not positive: leave the expiry out"},
		{"reason with a newline", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: web("10.0.2.21"), Reason: "a\nb"})
			return err
		}, codes.InvalidArgument, "reason contains a control character at byte 1: use a single line of text"},
		{"weight out of range", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.SetWeight(ctx, &directorv1.SetWeightRequest{Backend: web("10.0.2.21"), Weight: 70000})
			return err
		}, codes.InvalidArgument, "weight 70000 is out of range: use 0 to 65535"},
		{"bad VIP", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0"})
			return err
		}, codes.InvalidArgument, `vip "198.18.0" is not an IP address: use the VIP as in the configuration, e.g. 198.18.0.10`},
		{"unknown VIP", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.99"})
			return err
		}, codes.NotFound, "VIP 198.18.0.99 is not in the running configuration: configured VIPs are 198.18.0.10, 198.18.0.11"},
		// One expiry rule on every override path: a year at most (a director
		// drain of 8760h1s used to pass), never zero.
		{"director drain with a too long expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainDirector(ctx, &directorv1.DrainDirectorRequest{ExpiresAfter: durationpb.New(yearAndASecond)})
			return err
		}, codes.InvalidArgument, tooLong},
		{"backend drain with a too long expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: web("10.0.2.21"), ExpiresAfter: durationpb.New(yearAndASecond)})
			return err
		}, codes.InvalidArgument, tooLong},
		{"weight with a too long expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.SetWeight(ctx, &directorv1.SetWeightRequest{Backend: web("10.0.2.21"), Weight: 3, ExpiresAfter: durationpb.New(yearAndASecond)})
			return err
		}, codes.InvalidArgument, tooLong},
		{"VIP disable with a too long expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.10", ExpiresAfter: durationpb.New(yearAndASecond)})
			return err
		}, codes.InvalidArgument, tooLong},
		{"director drain with a zero expiry", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainDirector(ctx, &directorv1.DrainDirectorRequest{ExpiresAfter: durationpb.New(0)})
			return err
		}, codes.InvalidArgument, "expires_after: expiry 0s is not positive"},
		{"negative rollback version", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.Rollback(ctx, &directorv1.RollbackRequest{Version: -1})
			return err
		}, codes.InvalidArgument, "version -1 is negative"},
		{"rollback to the running version", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.Rollback(ctx, &directorv1.RollbackRequest{Version: 1})
			return err
		}, codes.FailedPrecondition, "version 1 is the running configuration"},
		{"rollback without history", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.Rollback(ctx, &directorv1.RollbackRequest{})
			return err
		}, codes.FailedPrecondition, "there is no previous configuration"},
		{"router flavor missing", func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.RouterConfig(ctx, &directorv1.RouterConfigRequest{})
			return err
		}, codes.InvalidArgument, "use ROUTER_FLAVOR_FRR or ROUTER_FLAVOR_BIRD"},
	}
	before := h.Loop.Status()
	_, lastSeq, _, _ := h.Loop.Events().Since(^uint64(0))
	world := h.World.String()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctxT(t), h.Client)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("got %v\nwant %s containing %q", err, tt.code, tt.msg)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // a wrongly accepted change would show by now
	after := h.Loop.Status()
	if n := len(after.Overrides.Drained) + len(after.Overrides.Weights) + len(after.Overrides.DisabledVIPs); n != 0 || after.Overrides.Director != nil {
		t.Errorf("refused requests left overrides: %+v", after.Overrides)
	}
	if after.Config != before.Config {
		t.Errorf("configuration changed: %+v -> %+v", before.Config, after.Config)
	}
	if events, _, _, _ := h.Loop.Events().Since(lastSeq); len(events) != 0 {
		t.Errorf("refused requests produced events: %+v", events)
	}
	if w := h.World.String(); w != world {
		t.Errorf("refused requests changed the kernel:\n%s\n%s", world, w)
	}
	if logs := h.Logs.String(); !strings.Contains(logs, "control call refused") {
		t.Errorf("refused calls are not in the audit log:\n%s", logs)
	}
}

// recv reads stream messages until n events arrived, returning everything.
func recv(t *testing.T, s directorv1.Director_WatchClient, n int) []*directorv1.WatchResponse {
	t.Helper()
	var out []*directorv1.WatchResponse
	events := 0
	for events < n {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv after %d events: %v", events, err)
		}
		out = append(out, m)
		if m.GetEvent() != nil {
			events++
		}
	}
	return out
}

func TestWatchFollowsAndResumesFromASequence(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx, cancel := context.WithCancel(ctxT(t))
	stream, err := h.Client.Watch(ctx, &directorv1.WatchRequest{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	// The header fixes the starting point before anything happens.
	md, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	_, last, _, _ := h.Loop.Events().Since(^uint64(0))
	if got := md.Get(control.HeaderAfterSeq); len(got) != 1 || got[0] != strconv.FormatUint(last, 10) {
		t.Errorf("header %s = %v, want [%d]", control.HeaderAfterSeq, got, last)
	}
	ref := &directorv1.BackendRef{Service: "web", Address: "10.0.2.22"}
	if _, err := h.Client.DrainBackend(ctxT(t), &directorv1.DrainBackendRequest{Backend: ref, Reason: "r1"}); err != nil {
		t.Fatal(err)
	}
	first := recv(t, stream, 1)[0].GetEvent()
	if first.GetKind() != directorv1.EventKind_EVENT_KIND_OVERRIDE || first.GetSubject() != "drain backend web/10.0.2.22:*" ||
		first.GetReason() != "r1" {
		t.Errorf("first event = %v", first)
	}
	cancel() // disconnect

	// Meanwhile more happens: an enable and a health change.
	if _, err := h.Client.EnableBackend(ctxT(t), &directorv1.EnableBackendRequest{Backend: ref}); err != nil {
		t.Fatal(err)
	}
	h.World.SetDown(ap("10.0.2.31:443"), true)
	h.WaitFor("health event", func(s *announcer.Status) bool {
		b, _ := controltest.Backend(s, "api", "10.0.2.31")
		return b.Health.State == health.Down && b.Effective == 0
	})

	stream, err = h.Client.Watch(ctxT(t), &directorv1.WatchRequest{AfterSeq: first.GetSeq()})
	if err != nil {
		t.Fatal(err)
	}
	msgs := recv(t, stream, 2)
	var got []string
	for i, m := range msgs {
		e := m.GetEvent()
		if e.GetSeq() != first.GetSeq()+uint64(i)+1 {
			t.Errorf("event %d has seq %d, want %d (no gap, no repeat)", i, e.GetSeq(), first.GetSeq()+uint64(i)+1)
		}
		got = append(got, e.GetKind().String()+" "+e.GetSubject()+" "+e.GetTo())
	}
	want := []string{"EVENT_KIND_OVERRIDE enable backend web/10.0.2.22:* ", "EVENT_KIND_HEALTH tcp 10.0.2.31:443 down"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("resumed events = %q, want %q", got, want)
	}
}

func TestWatchReportsLostEvents(t *testing.T) {
	h := controltest.Start(t, controltest.Options{Loop: announcer.Options{Events: announcer.NewEventLog(3)}})
	ref := &directorv1.BackendRef{Service: "web", Address: "10.0.2.22"}
	for range 3 {
		if _, err := h.Client.DrainBackend(ctxT(t), &directorv1.DrainBackendRequest{Backend: ref}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Client.EnableBackend(ctxT(t), &directorv1.EnableBackendRequest{Backend: ref}); err != nil {
			t.Fatal(err)
		}
	}
	_, last, _, _ := h.Loop.Events().Since(^uint64(0))
	stream, err := h.Client.Watch(ctxT(t), &directorv1.WatchRequest{AfterSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	msgs := recv(t, stream, 3)
	lost := msgs[0].GetLost()
	if lost == nil || lost.GetRequestedAfter() != 1 || lost.GetResumedAfter() != last-3 {
		t.Fatalf("first message = %v, want lost events from 1 to %d", msgs[0], last-3)
	}
	if e := msgs[1].GetEvent(); e.GetSeq() != last-2 {
		t.Errorf("first event after the gap has seq %d, want %d", e.GetSeq(), last-2)
	}

	// A sequence the log never issued (the daemon restarted): lost, from 0.
	stream, err = h.Client.Watch(ctxT(t), &directorv1.WatchRequest{AfterSeq: last + 100})
	if err != nil {
		t.Fatal(err)
	}
	msgs = recv(t, stream, 1)
	if l := msgs[0].GetLost(); l == nil || l.GetRequestedAfter() != last+100 || l.GetResumedAfter() != 0 {
		t.Errorf("first message = %v, want lost events back to 0", msgs[0])
	}

	// A sequence from another daemon instance (another epoch), even one this
	// log has issued too: lost, from 0, and every held event is replayed.
	stream, err = h.Client.Watch(ctxT(t), &directorv1.WatchRequest{AfterSeq: last - 1, Epoch: "an-older-daemon"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil || len(md.Get(control.HeaderEpoch)) != 1 || md.Get(control.HeaderEpoch)[0] == "an-older-daemon" {
		t.Fatalf("epoch header = %v, %v", md.Get(control.HeaderEpoch), err)
	}
	msgs = recv(t, stream, 3)
	if l := msgs[0].GetLost(); l == nil || l.GetRequestedAfter() != last-1 || l.GetResumedAfter() != 0 {
		t.Errorf("first message = %v, want lost events back to 0", msgs[0])
	}
	// With the right epoch the same sequence resumes normally.
	stream, err = h.Client.Watch(ctxT(t), &directorv1.WatchRequest{AfterSeq: last - 1, Epoch: md.Get(control.HeaderEpoch)[0]})
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, stream, 1)[0]; m.GetEvent().GetSeq() != last {
		t.Errorf("resume with the right epoch: first message %v, want event %d", m, last)
	}
}

func TestWatchEndsWhenTheServerStops(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	stream, err := h.Client.Watch(ctxT(t), &directorv1.WatchRequest{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Recv returned before the server stopped: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	start := time.Now()
	h.Stop()
	// The open stream must not hold the graceful stop for its whole bound.
	if d := time.Since(start); d > time.Second {
		t.Errorf("stopping with an open Watch took %s", d)
	}
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Recv after stop = %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after the server stopped")
	}
}

// TestWatchStreamsCapped: at most MaxWatchers Watch streams are open; one
// more is refused with RESOURCE_EXHAUSTED and a hint, and closing a stream
// makes room.
func TestWatchStreamsCapped(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	// 100 streams per connection at most (grpc.MaxConcurrentStreams).
	var clients []directorv1.DirectorClient
	for range control.MaxWatchers/100 + 1 {
		conn, err := grpc.NewClient("unix://"+h.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients = append(clients, directorv1.NewDirectorClient(conn))
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	// open starts stream i and returns nil once the server holds it (its
	// header names the epoch), or the error it was refused with.
	open := func(i int) error {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		w, err := clients[i/100].Watch(ctx, &directorv1.WatchRequest{FromNow: true})
		if err != nil {
			return err
		}
		if md, err := w.Header(); err == nil && len(md.Get(control.HeaderEpoch)) == 1 {
			return nil
		}
		_, err = w.Recv()
		return err
	}
	for i := range control.MaxWatchers {
		if err := open(i); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	err := open(control.MaxWatchers)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "Watch streams are open, the most this daemon serves") {
		t.Fatalf("stream %d: %v, want RESOURCE_EXHAUSTED", control.MaxWatchers+1, err)
	}
	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for err := open(control.MaxWatchers); err != nil; err = open(control.MaxWatchers) {
		// The closed stream's slot is freed when the server sees the cancel.
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("a stream after one closed: %v", err)
		}
	}
}
