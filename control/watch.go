package control

import (
	"math"
	"strconv"

	"google.golang.org/grpc/metadata"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// HeaderAfterSeq is the Watch response header that carries the sequence the
// stream starts after: with from_now, the client learns its resume point
// before any event arrives.
const HeaderAfterSeq = "director-after-seq"

// HeaderEpoch is the Watch response header that identifies this daemon's
// event numbering; a client resuming with another epoch gets every event
// as new (sequence numbers restart with the daemon).
const HeaderEpoch = "director-epoch"

// Watch streams the event log from the requested point and then follows it.
// The client resumes after a disconnect by passing the last sequence it saw.
// When the server no longer holds some of the requested events (the ring
// overwrote them, or the daemon restarted and its numbering began anew), the
// stream starts with EventsLost so the client knows to re-read the status.
//
// What a stream costs is bounded: it holds one page of watchPage events at a
// time (a client that does not read blocks the sends once gRPC's flow
// control window of 64 KiB is full), and at most maxWatchers streams are open
// at once; more are refused with RESOURCE_EXHAUSTED (docs/api.md).
func (s *service) Watch(req *directorv1.WatchRequest, stream directorv1.Director_WatchServer) error {
	log := s.opts.Director.Events()
	if log == nil {
		return status.Error(codes.Unavailable, "this daemon keeps no event log")
	}
	if n := s.watchers.Add(1); n > maxWatchers {
		s.watchers.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "%d Watch streams are open, the most this daemon serves: close one (an idle `directorctl watch`) and retry", maxWatchers)
	}
	defer s.watchers.Add(-1)
	ctx := stream.Context()
	after := req.GetAfterSeq()
	_, last, _, _ := log.Since(math.MaxUint64)
	var restarted *directorv1.WatchResponse
	switch {
	case req.GetFromNow():
		after = last
	case after > last || (req.GetEpoch() != "" && req.GetEpoch() != s.epoch):
		// The client's sequence is from another daemon instance: everything
		// this one holds is new to the client.
		restarted = lostMsg(after, 0)
		after = 0
	}
	// The header tells the client where the stream starts (useful with
	// from_now) once the starting point is fixed.
	if err := stream.SendHeader(metadata.Pairs(HeaderAfterSeq, strconv.FormatUint(after, 10), HeaderEpoch, s.epoch)); err != nil {
		return err
	}
	if restarted != nil {
		if err := stream.Send(restarted); err != nil {
			return err
		}
	}
	for {
		events, newest, lost, changed := log.SinceAtMost(after, watchPage)
		if lost && len(events) > 0 {
			if err := stream.Send(lostMsg(after, events[0].Seq-1)); err != nil {
				return err
			}
		}
		for _, e := range events {
			if err := stream.Send(&directorv1.WatchResponse{Kind: &directorv1.WatchResponse_Event{Event: eventToProto(e)}}); err != nil {
				return err
			}
		}
		if len(events) > 0 {
			after = events[len(events)-1].Seq
		} else {
			after = newest
		}
		if after < newest {
			continue // the next page
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return status.Error(codes.Unavailable, "directord is stopping: reconnect with --after to resume")
		}
	}
}

// Bounds of Watch streams (see Watch).
const (
	watchPage   = 64
	maxWatchers = 256
)

func lostMsg(requested, resumed uint64) *directorv1.WatchResponse {
	return &directorv1.WatchResponse{Kind: &directorv1.WatchResponse_Lost{Lost: &directorv1.EventsLost{
		RequestedAfter: requested, ResumedAfter: resumed}}}
}
