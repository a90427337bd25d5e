package console

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// Target is one director the console connects to.
type Target struct {
	// Name labels the director on the page.
	Name string
	// Addr is a Unix socket path (starting with /) or host:port (mTLS).
	Addr string
}

// director follows one director: its status by polling (and at once after
// every event), its events through Watch, and the rates of its counters.
type director struct {
	Target
	client directorv1.DirectorClient
	conn   *grpc.ClientConn
	poll   time.Duration
	log    *slog.Logger
	// changed is poked after every new status or event (never blocks).
	changed func()

	mu      sync.Mutex
	status  *directorv1.GetStatusResponse
	err     string
	updated time.Time
	rates   map[string]Numbers
	events  []EventRow // newest last, at most maxEvents

	refresh chan struct{}
}

// maxEvents is how many events per director the page keeps.
const maxEvents = 200

func newDirector(t Target, conn *grpc.ClientConn, poll time.Duration, log *slog.Logger, changed func()) *director {
	return &director{Target: t, client: directorv1.NewDirectorClient(conn), conn: conn, poll: poll,
		log: log.With("director", t.Name), changed: changed, refresh: make(chan struct{}, 1)}
}

// run polls and watches until ctx ends.
func (d *director) run(ctx context.Context) {
	go d.watch(ctx)
	r := newRates()
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		d.pollOnce(ctx, r)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.refresh:
		}
	}
}

// Refresh asks for a status poll now (coalesced).
func (d *director) Refresh() {
	select {
	case d.refresh <- struct{}{}:
	default:
	}
}

func (d *director) pollOnce(ctx context.Context, r *rates) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := d.client.GetStatus(cctx, &directorv1.GetStatusRequest{})
	now := time.Now()
	d.mu.Lock()
	if err != nil {
		if d.err == "" {
			d.log.Warn("director unreachable", "err", err)
		}
		d.err = describeErr(err)
	} else {
		d.status, d.err, d.updated, d.rates = st, "", now, r.observe(st, now)
	}
	d.mu.Unlock()
	d.changed()
}

// watch follows the event stream, resuming after the last event seen, and
// reconnects every second while the director is away.
func (d *director) watch(ctx context.Context) {
	var after uint64
	var epoch string
	for ctx.Err() == nil {
		after, epoch = d.watchOnce(ctx, after, epoch)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (d *director) watchOnce(ctx context.Context, after uint64, epoch string) (uint64, string) {
	// The first stream (after 0) replays what the director holds, for the
	// page's event list; later ones resume without gaps or repeats.
	stream, err := d.client.Watch(ctx, &directorv1.WatchRequest{AfterSeq: after, Epoch: epoch})
	if err != nil {
		return after, epoch
	}
	if md, err := stream.Header(); err == nil {
		if e := md.Get("director-epoch"); len(e) > 0 {
			epoch = e[0]
		}
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return after, epoch
		}
		if e := msg.GetEvent(); e != nil {
			after = e.GetSeq()
			d.addEvent(e)
			d.Refresh()
		}
	}
}

func (d *director) addEvent(e *directorv1.Event) {
	d.mu.Lock()
	d.events = append(d.events, EventRow{Director: d.Name, Seq: e.GetSeq(), Time: e.GetTime().AsTime(),
		Kind: enumName(e.GetKind().String(), "EVENT_KIND_"), Subject: e.GetSubject(), From: e.GetFrom(), To: e.GetTo(),
		Reason: e.GetReason(), Who: e.GetWho()})
	if len(d.events) > maxEvents {
		d.events = d.events[len(d.events)-maxEvents:]
	}
	d.mu.Unlock()
	d.changed()
}

// snapshot copies what the view needs.
func (d *director) snapshot() (snapshot, []EventRow) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return snapshot{name: d.Name, target: d.Addr, status: d.status, err: d.err, updated: d.updated, rates: d.rates},
		append([]EventRow(nil), d.events...)
}

// onBehalfOfHeader is control.OnBehalfOfHeader (the console does not link
// the daemon's packages; a test checks they agree).
const onBehalfOfHeader = "director-on-behalf-of"

// asUser returns ctx carrying the console user, whom the director records
// after the console's own identity.
func asUser(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, onBehalfOfHeader, user)
}

// describeErr is a gRPC error's message without the "rpc error" prefix.
func describeErr(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", s.Message(), s.Code())
	}
	return err.Error()
}
