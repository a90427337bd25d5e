// Command labclient is the lab's traffic client (package lab/traffic):
//
//	labclient http -url http://198.18.0.10/ [-n N] [-rate R] [-duration D] [-timeout T] [-progress 1s]
//	labclient hold -addr 198.18.0.10:7000 [-conns 200] [-interval 1s] [-timeout 5s]
//
// http sends requests at a steady rate, each on a new connection; hold keeps
// long-lived echo connections open and pings them, printing "READY ..."
// once they are open. Both run until their count or duration is reached or
// until SIGTERM/SIGINT, then print one "RESULT {json}" line on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/traffic"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: labclient http|hold [flags]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		res any
		err error
	)
	switch args[0] {
	case "http":
		res, err = runHTTP(ctx, args[1:], stdout, stderr)
	case "hold":
		res, err = runHold(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "labclient: unknown mode %q (http, hold)\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "labclient: %v\n", err)
		return 2
	}
	line, err := traffic.FormatResult(res)
	if err != nil {
		fmt.Fprintf(stderr, "labclient: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, line)
	return 0
}

func runHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) (any, error) {
	fs := flag.NewFlagSet("labclient http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o traffic.HTTPOptions
	fs.StringVar(&o.URL, "url", "http://198.18.0.10/", "URL to request")
	fs.IntVar(&o.Requests, "n", 0, "requests to send (0: until -duration or a signal)")
	fs.Float64Var(&o.Rate, "rate", 20, "requests per second")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: until -n or a signal)")
	fs.DurationVar(&o.Timeout, "timeout", 3*time.Second, "timeout of one request")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "requests in flight at most")
	fs.DurationVar(&o.ProgressEvery, "progress", 0, "print counts on stderr this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.ProgressEvery > 0 {
		o.Progress = stderr
	}
	return traffic.HTTP(ctx, o)
}

func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) (any, error) {
	fs := flag.NewFlagSet("labclient hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o traffic.HoldOptions
	fs.StringVar(&o.Addr, "addr", "198.18.0.10:7000", "echo service address")
	fs.IntVar(&o.Conns, "conns", 200, "connections to keep open")
	fs.DurationVar(&o.Interval, "interval", time.Second, "time between pings on one connection")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Second, "an echo later than this breaks the connection")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.Ready = func(opened, failed int) {
		fmt.Fprintf(stdout, "%sopened=%d failed=%d\n", traffic.ReadyPrefix, opened, failed)
	}
	return traffic.Hold(ctx, o)
}
