package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

func (a *app) watchCmd() *cobra.Command {
	var (
		after uint64
		all   bool
		count int
		out   string
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
			req := &directorv1.WatchRequest{AfterSeq: after, FromNow: !all && !cmd.Flags().Changed("after")}
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			return a.follow(cmd.Context(), c, req, out, count)
		},
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "resume after this event sequence number")
	cmd.Flags().BoolVar(&all, "all", false, "start with every event directord still holds")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events (default: follow until interrupted)")
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

// follow prints the stream until it ends, ctx is cancelled (Ctrl-C: exit 0)
// or count events were printed.
func (a *app) follow(ctx context.Context, c directorv1.DirectorClient, req *directorv1.WatchRequest, out string, count int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Watch(ctx, req)
	if err != nil {
		return rpcError{"watch", err}
	}
	last := req.GetAfterSeq()
	seen := 0
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return rpcError{fmt.Sprintf("watch (resume with --after %d)", last), err}
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
		last = e.GetSeq()
		if out == "json" {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(e)
			if err != nil {
				return failure{err}
			}
			fmt.Fprintln(a.stdout, string(b))
		} else {
			fmt.Fprintln(a.stdout, eventLine(e))
		}
		seen++
		if count > 0 && seen >= count {
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
