package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// headerAfterSeq is the Watch response header with the stream's starting
// sequence (control.HeaderAfterSeq; directorctl imports only proto/).
const headerAfterSeq = "director-after-seq"

// headerEpoch is the Watch response header naming the daemon instance
// (control.HeaderEpoch).
const headerEpoch = "director-epoch"

func (a *app) watchCmd() *cobra.Command {
	var (
		after       uint64
		all         bool
		count       int
		out         string
		noReconnect bool
		epoch       string
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow directord's events (health, VIPs, peers, reloads, overrides)",
		Long: `watch prints directord's events as they happen until interrupted. Each event
has a sequence number: after a disconnect, 'directorctl watch --after N'
resumes after event N without gaps. If directord no longer holds some of
those events, watch says so; re-read 'directorctl status' then.`,
		Example: `  directorctl watch
  directorctl watch --after 1041
  directorctl watch --all -o json | jq .`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			if count < 0 {
				return usagef("--count %d must not be negative", count)
			}
			req := &directorv1.WatchRequest{AfterSeq: after, FromNow: !all && !cmd.Flags().Changed("after"), Epoch: epoch}
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			return a.follow(cmd.Context(), c, req, out, count, !noReconnect)
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "resume after this event sequence number")
	cmd.Flags().BoolVar(&all, "all", false, "start with every event directord still holds")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events (default: follow until interrupted)")
	cmd.Flags().StringVar(&epoch, "epoch", "", "with --after: the daemon instance the sequence is from (printed when a watch ends)")
	cmd.Flags().BoolVar(&noReconnect, "no-reconnect", false, "exit when the connection is lost instead of reconnecting and resuming")
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

// follow prints the stream until ctx is cancelled (Ctrl-C: exit 0) or count
// events were printed. When the connection is lost (directord restarts) it
// reconnects every second and resumes after the last event it printed.
func (a *app) follow(ctx context.Context, c directorv1.DirectorClient, req *directorv1.WatchRequest, out string, count int, reconnect bool) error {
	pos := position{seq: req.GetAfterSeq(), epoch: req.GetEpoch()}
	seen := 0
	for {
		err := a.stream(ctx, c, req, out, &pos, &seen, count)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !reconnect || status.Code(err) != codes.Unavailable {
			return rpcError{fmt.Sprintf("watch (resume with --after %d --epoch %s)", pos.seq, pos.epoch), err}
		}
		fmt.Fprintf(a.stderr, "directorctl: watch interrupted (%s); reconnecting to resume after event %d\n",
			status.Convert(err).Message(), pos.seq)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		req = &directorv1.WatchRequest{AfterSeq: pos.seq, Epoch: pos.epoch}
	}
}

// position is where a watch is in the event log of one daemon instance.
type position struct {
	seq   uint64
	epoch string
}

// stream prints one Watch stream; it returns nil when count events were
// printed or the stream ended cleanly, and the stream's error otherwise.
func (a *app) stream(ctx context.Context, c directorv1.DirectorClient, req *directorv1.WatchRequest, out string,
	pos *position, seen *int, count int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Watch(ctx, req)
	if err != nil {
		return err
	}
	// The headers say where the stream starts (it matters with from_now and
	// after a restart) and which daemon instance numbered the events.
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if v := md.Get(headerAfterSeq); len(v) == 1 {
		if n, err := strconv.ParseUint(v[0], 10, 64); err == nil {
			pos.seq = n
		}
	}
	if v := md.Get(headerEpoch); len(v) == 1 {
		pos.epoch = v[0]
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if l := m.GetLost(); l != nil {
			fmt.Fprintf(a.stderr, "directorctl: events %d to %d are no longer held by directord (lost); re-read `directorctl status`\n",
				l.GetRequestedAfter()+1, l.GetResumedAfter())
			continue
		}
		e := m.GetEvent()
		if e == nil {
			continue
		}
		pos.seq = e.GetSeq()
		if out == "json" {
			if err := printJSONLine(a.stdout, e); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(a.stdout, eventLine(e))
		}
		*seen++
		if count > 0 && *seen >= count {
			return nil
		}
	}
}

// eventLine renders one event for humans.
func eventLine(e *directorv1.Event) string {
	s := fmt.Sprintf("#%d %s %-8s %s", e.GetSeq(), e.GetTime().AsTime().Local().Format("15:04:05.000"),
		enumWord(e.GetKind().String(), "EVENT_KIND_"), e.GetSubject())
	switch {
	case e.GetFrom() != "" && e.GetTo() != "":
		s += ": " + e.GetFrom() + " -> " + e.GetTo()
	case e.GetTo() != "":
		s += ": " + e.GetTo()
	}
	if e.GetReason() != "" {
		s += " (" + e.GetReason() + ")"
	}
	return s
}

// tsTime converts a timestamp, mapping an unset one to the zero time.
func tsTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// ago renders how long ago t was, rounded for humans ("" for the zero time).
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
