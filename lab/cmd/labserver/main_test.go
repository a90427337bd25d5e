package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &server{name: "rs7", log: slog.New(slog.DiscardHandler)}, httpLn, echoLn) }()

	for _, c := range []struct{ path, body, header string }{{"/", "rs7\n", "rs7"}, {"/healthz", "ok\n", ""}} {
		resp, err := http.Get(fmt.Sprintf("http://%s%s", httpLn.Addr(), c.path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != c.body || resp.Header.Get("X-Real-Server") != c.header {
			t.Errorf("GET %s = %d %q header %q, want 200 %q header %q", c.path, resp.StatusCode, body, resp.Header.Get("X-Real-Server"), c.body, c.header)
		}
	}

	conn, err := net.DialTimeout("tcp", echoLn.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if greet, err := r.ReadString('\n'); err != nil || greet != "rs7\n" {
		t.Fatalf("echo greeting %q, %v", greet, err)
	}
	for _, msg := range []string{"ping 1\n", "ping 2\n"} {
		io.WriteString(conn, msg)
		if got, err := r.ReadString('\n'); err != nil || got != msg {
			t.Errorf("echo of %q = %q, %v", msg, got, err)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
	// The open echo connection is closed by the shutdown.
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the echo connection stayed open after shutdown")
	}
	conn.Close()
}
