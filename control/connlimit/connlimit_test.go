package connlimit

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestCapHolds: with a cap of 4, a client opening 50 connections gets 4
// served and the rest closed at once; closing a served one (twice) frees
// exactly one slot.
func TestCapHolds(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 4, "test", nil)
	defer l.Close()
	served := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			served <- c
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	refused := 0
	for range 50 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if closedByServer(c) {
			refused++
		}
	}
	if refused != 46 || l.Open() != 4 || l.Rejected() != 46 {
		t.Fatalf("refused %d, open %d, rejected %d; want 46, 4, 46", refused, l.Open(), l.Rejected())
	}
	first := <-served
	first.Close()
	first.Close()
	if l.Open() != 3 {
		t.Fatalf("open %d after closing one twice, want 3", l.Open())
	}
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, c)
	if closedByServer(c) {
		t.Fatal("a connection under the cap was refused")
	}
	if l.Open() != 4 {
		t.Fatalf("open %d, want 4", l.Open())
	}
}

// closedByServer reports whether the server closed c (EOF or a reset)
// rather than keeping it open; it waits up to a second for either.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err == io.EOF || err != nil
}

func TestDefaultMaxWithinBounds(t *testing.T) {
	if m := DefaultMax(); m < minMax || m > maxMax {
		t.Errorf("DefaultMax() = %d, want %d..%d", m, minMax, maxMax)
	}
}
