//go:build linux

package main

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/anycast-director/director/statedir"
)

// fileWatch records, through inotify, what happens to the files of the
// state directory, its configs, and the configuration file's folder, so
// inPlaceWrites can tell a file replaced by a rename from one written
// under its final name.
type fileWatch struct {
	t    testing.TB
	fd   int
	dirs map[int32]string // watch descriptor -> folder
}

// inotifyEvents are the events fileWatch asks for: enough to see files
// created, written, renamed and removed.
const inotifyEvents = syscall.IN_CREATE | syscall.IN_MODIFY | syscall.IN_CLOSE_WRITE |
	syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE

// watchFiles starts watching stateDir, its configs folder and cfgPath's
// folder; the watch ends with the test or with close.
func watchFiles(t testing.TB, stateDir, cfgPath string) *fileWatch {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	w := &fileWatch{t: t, fd: fd, dirs: map[int32]string{}}
	t.Cleanup(w.close)
	for _, dir := range []string{stateDir, filepath.Join(stateDir, statedir.ConfigsDir), filepath.Dir(cfgPath)} {
		wd, err := syscall.InotifyAddWatch(fd, dir, inotifyEvents)
		if err != nil {
			t.Fatalf("inotify: watch %s: %v", dir, err)
		}
		w.dirs[int32(wd)] = dir
	}
	return w
}

// drain returns the events since the last drain. A queue that overflowed
// (events lost) fails the test: the check would not have seen everything.
func (w *fileWatch) drain() []fsEvent {
	w.t.Helper()
	var out []fsEvent
	buf := make([]byte, 1<<16)
	for {
		n, err := syscall.Read(w.fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return out
		}
		if err != nil {
			w.t.Fatalf("inotify: read: %v", err)
		}
		events, err := parseInotify(buf[:n], w.dirs)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, e := range events {
			if e.Mask&syscall.IN_Q_OVERFLOW != 0 {
				w.t.Fatalf("inotify: the event queue overflowed, some writes were not seen (raise fs.inotify.max_queued_events)")
			}
		}
		out = append(out, events...)
	}
}

// close ends the watch (again is harmless).
func (w *fileWatch) close() {
	if w.fd >= 0 {
		syscall.Close(w.fd)
		w.fd = -1
	}
}
