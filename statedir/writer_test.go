package statedir

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWriterCoalescesAndAnswersEveryCaller: many saves in a row end with the
// newest on disk, and every caller hears back exactly once, after the file
// it handed in (or a newer one) is durable.
func TestWriterCoalescesAndAnswersEveryCaller(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(dir)
	w := NewWriter(store, discard(), WriterOptions{Marks: Marks{VIPInterface: "lo"}})
	const n = 200
	var mu sync.Mutex
	answers := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		f := &File{Director: "d1", Overrides: []Override{{Kind: SetWeight, Weight: i}}}
		w.Save(f, nil, func(err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("save %d: %v", i, err)
			}
			// Durable before the answer: what is on disk is this save or a newer one.
			got, rerr := store.Read()
			if rerr != nil || got == nil || got.Overrides[0].Weight < i {
				t.Errorf("save %d answered while the disk holds %+v (%v)", i, got, rerr)
			}
			mu.Lock()
			answers[i]++
			mu.Unlock()
		})
	}
	wg.Wait()
	w.Close()
	for i := range n {
		if answers[i] != 1 {
			t.Errorf("save %d answered %d times", i, answers[i])
		}
	}
	got, err := store.Read()
	if err != nil || got.Overrides[0].Weight != n-1 || got.Owned.Marks.VIPInterface != "lo" {
		t.Fatalf("on disk: %+v, %v; want the last save, with the writer's marks", got, err)
	}
	if r := w.Report(); r.Saved.IsZero() || r.SaveError != "" {
		t.Errorf("report after good saves: %+v", r)
	}
}

// TestWriterCloseFlushes: what was handed in before Close is written; a
// Save after Close is refused at once.
func TestWriterCloseFlushes(t *testing.T) {
	store := NewStore(t.TempDir())
	w := NewWriter(store, discard(), WriterOptions{})
	w.Save(&File{Director: "last"}, nil, nil)
	w.Close()
	if got, err := store.Read(); err != nil || got == nil || got.Director != "last" {
		t.Fatalf("after Close the disk holds %+v, %v", got, err)
	}
	var answered error
	w.Save(&File{Director: "late"}, nil, func(err error) { answered = err })
	if !errors.Is(answered, ErrClosed) {
		t.Errorf("save after Close answered %v, want ErrClosed", answered)
	}
	w.Close() // twice is fine
}

// TestWriterReportsFailures: a state directory that cannot be written fails
// the save, answers the caller with the error, and shows in the report.
func TestWriterReportsFailures(t *testing.T) {
	parent := t.TempDir()
	blocker := filepath.Join(parent, "state")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil { // a file where the directory should be
		t.Fatal(err)
	}
	w := NewWriter(NewStore(blocker), discard(), WriterOptions{})
	defer w.Close()
	done := make(chan error, 1)
	w.Save(&File{}, nil, func(err error) { done <- err })
	if err := <-done; err == nil {
		t.Fatal("a save into a file instead of a directory succeeded")
	}
	r := w.Report()
	if r.SaveFailures != 1 || !strings.Contains(r.SaveError, "state directory") {
		t.Errorf("report = %+v, want one failure naming the state directory", r)
	}
}
