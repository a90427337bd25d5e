package traffic

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// realServer answers like labserver, as name.
func realServer(t *testing.T, name, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Real-Server", name)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// echoServer greets with name and echoes lines; after echoes lines a
// connection is closed (0: never).
func echoServer(t *testing.T, name string, after int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, name+"\n")
				r := bufio.NewReader(c)
				for n := 0; after == 0 || n < after; n++ {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHTTP(t *testing.T) {
	url := realServer(t, "rs1", "rs1\n")
	res, err := HTTP(context.Background(), HTTPOptions{URL: url, Requests: 20, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 20 || res.OK != 20 || res.Failed != 0 || res.ByServer["rs1"] != 20 {
		t.Errorf("HTTP = %+v, want 20 answers from rs1", res)
	}
}

func TestHTTPFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	for _, tt := range []struct{ name, url, want string }{
		{"refused", closed, "refused"},
		{"inconsistent name", realServer(t, "rs1", "rs2\n"), "consistent real server name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			res, err := HTTP(context.Background(), HTTPOptions{URL: tt.url, Requests: 5, Rate: 500, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Failed != 5 || res.OK != 0 || len(res.Failures) != 5 {
				t.Fatalf("HTTP = %+v, want 5 failures", res)
			}
			if !strings.Contains(res.Failures[0].Err, tt.want) {
				t.Errorf("failure %q, want %q", res.Failures[0].Err, tt.want)
			}
			if got := res.FailedStartedAfter(before); got != 5 {
				t.Errorf("FailedStartedAfter(start) = %d, want 5", got)
			}
			if got := res.FailedStartedAfter(time.Now()); got != 0 {
				t.Errorf("FailedStartedAfter(now) = %d, want 0", got)
			}
			if got := res.FailedBetween(before, time.Now().Add(time.Second)); got != 5 {
				t.Errorf("FailedBetween = %d, want 5", got)
			}
		})
	}
}

func TestHTTPDurationAndCancel(t *testing.T) {
	url := realServer(t, "rs1", "rs1\n")
	start := time.Now()
	res, err := HTTP(context.Background(), HTTPOptions{URL: url, Rate: 100, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second || res.Sent == 0 || res.Failed != 0 {
		t.Errorf("a 200 ms run took %s and sent %d (%d failed)", el, res.Sent, res.Failed)
	}
	if _, err := HTTP(context.Background(), HTTPOptions{URL: url}); err == nil {
		t.Error("a run without a rate was accepted")
	}
}

func TestHold(t *testing.T) {
	tests := []struct {
		name       string
		after      int // the server closes each connection after this many echoes
		wantBroken int
	}{
		{"all stay up", 0, 0},
		{"server closes every connection", 2, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := echoServer(t, "rs2", tt.after)
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			var ready [2]int
			res, err := Hold(ctx, HoldOptions{Addr: addr, Conns: 6, Interval: 50 * time.Millisecond, Timeout: time.Second,
				Ready: func(o, f int) { ready = [2]int{o, f} }})
			if err != nil {
				t.Fatal(err)
			}
			if res.Opened != 6 || ready != [2]int{6, 0} || res.ByServer["rs2"] != 6 {
				t.Fatalf("Hold = %+v, ready %v; want 6 connections to rs2", res, ready)
			}
			if res.Broken != tt.wantBroken || res.Alive != 6-tt.wantBroken || len(res.Breaks) != tt.wantBroken {
				t.Errorf("broken %d alive %d breaks %d, want %d broken", res.Broken, res.Alive, len(res.Breaks), tt.wantBroken)
			}
			if got := res.BrokenBetween(res.Start, res.End.Add(time.Second)); got != tt.wantBroken {
				t.Errorf("BrokenBetween(run) = %d, want %d", got, tt.wantBroken)
			}
			if res.Pings == 0 {
				t.Error("no ping was answered")
			}
		})
	}
}

func TestResultRoundTrip(t *testing.T) {
	in := HoldResult{Opened: 3, Broken: 1, Breaks: []Event{{At: time.Unix(100, 0).UTC(), Server: "rs1", Err: "read: reset"}}}
	line, err := FormatResult(in)
	if err != nil {
		t.Fatal(err)
	}
	var out HoldResult
	if err := ParseResult("log line\n"+line+"\nmore\n", &out); err != nil {
		t.Fatal(err)
	}
	if out.Opened != 3 || out.Broken != 1 || len(out.Breaks) != 1 || !out.Breaks[0].At.Equal(in.Breaks[0].At) {
		t.Errorf("round trip: %+v", out)
	}
	if err := ParseResult("no result here\n", &out); err == nil {
		t.Error("ParseResult found a result in output without one")
	}
}

// TestHoldRetriesOpens: a connection the server drops before its greeting
// is opened again; only what opened is then held and counted.
func TestHoldRetriesOpens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n < 2 { // the first two die before the greeting
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.WriteString(c, "rs1\n")
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, line)
				}
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := Hold(ctx, HoldOptions{Addr: ln.Addr().String(), Conns: 4, Interval: 50 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 4 || res.OpenFailed != 0 || res.OpenRetried < 1 || res.OpenRetried > 2 {
		t.Errorf("Hold = opened %d, failed %d, retried %d; want 4 opened, 1 or 2 of them retried", res.Opened, res.OpenFailed, res.OpenRetried)
	}
}
