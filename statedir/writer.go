package statedir

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Writer is the state directory's single writer: one goroutine saves the
// latest File handed to Save, so a caller (the announcer loop) never waits
// for the disk. Files handed in while a save runs are coalesced: only the
// newest is written next, and every caller waiting on an older one is
// answered when the newer one is durable.
type Writer struct {
	store *Store
	log   *slog.Logger
	now   func() time.Time
	marks Marks

	mu      sync.Mutex
	next    *job // the newest File not written yet
	closed  bool
	wake    chan struct{}
	stopped chan struct{}

	report atomic.Pointer[Report]
}

// job is a File to write and the callers waiting for it.
type job struct {
	file     *File
	contents map[string][]byte
	done     []func(error)
}

// Report says how the state directory fares, for status and metrics.
type Report struct {
	// Dir is the state directory.
	Dir string
	// Restored is set when state was found and used at start.
	Restored bool
	// Lost is set when the state found at start could not be used.
	Lost bool
	// LoadError says why it was lost, or what was dropped while restoring.
	LoadError string
	// SetAside is where the unusable state file was moved.
	SetAside string
	// Saved is when the state was last written.
	Saved time.Time
	// SaveError is the last write's error ("" when it succeeded).
	SaveError string
	// SaveFailures counts failed writes since start.
	SaveFailures uint64
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Marks are stamped into every File written (Owned.Marks): how this
	// process binds VIPs and marks routes.
	Marks Marks
	// Restored is what Restore found, for Report.
	Restored Restored
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// NewWriter starts the writer goroutine of store. Close stops it.
func NewWriter(store *Store, log *slog.Logger, opts WriterOptions) *Writer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Writer{store: store, log: log, now: opts.Now, marks: opts.Marks,
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	r := &Report{Dir: store.Dir(), Restored: opts.Restored.File != nil, Lost: opts.Restored.Lost,
		SetAside: opts.Restored.SetAside}
	if opts.Restored.Err != nil {
		r.LoadError = opts.Restored.Err.Error()
	}
	w.report.Store(r)
	go w.run()
	return w
}

// Report returns how the state directory fares. Never nil.
func (w *Writer) Report() Report { return *w.report.Load() }

// Save hands f to the writer goroutine; contents holds the configuration
// files f refers to (see Store.Save). done, when not nil, is called from
// the writer goroutine once f or a newer File is durable, with nil, or
// with the error of that write. f must not be changed afterwards. After
// Close, done is called at once with ErrClosed.
func (w *Writer) Save(f *File, contents map[string][]byte, done func(error)) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return
	}
	j := &job{file: f, contents: contents}
	if w.next != nil {
		j.done = w.next.done
	}
	if done != nil {
		j.done = append(j.done, done)
	}
	w.next = j
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// ErrClosed answers a Save after Close.
var ErrClosed = errClosed{}

type errClosed struct{}

func (errClosed) Error() string { return "the state writer is closed: the daemon is stopping" }

// Close writes what was handed in before it, then stops the goroutine.
func (w *Writer) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.stopped
		return
	}
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.stopped
}

// run writes the newest File whenever there is one, until Close.
func (w *Writer) run() {
	defer close(w.stopped)
	for range w.wake {
		w.mu.Lock()
		j, closed := w.next, w.closed
		w.next = nil
		w.mu.Unlock()
		if j != nil {
			w.write(j)
		}
		if closed {
			w.mu.Lock()
			j = w.next
			w.next = nil
			w.mu.Unlock()
			if j != nil {
				w.write(j)
			}
			return
		}
	}
}

// write saves one File and answers its callers.
func (w *Writer) write(j *job) {
	j.file.Written = w.now()
	j.file.Owned.Marks = w.marks
	start := w.now()
	err := w.store.Save(j.file, j.contents)
	r := *w.report.Load()
	if err != nil {
		r.SaveError = err.Error()
		r.SaveFailures++
		w.log.Error("saving the state failed; operator overrides and the configuration history are kept in memory only", "err", err,
			"reason", "the state directory "+w.store.Dir()+" is not writable or the disk is full")
	} else {
		r.Saved, r.SaveError = w.now(), ""
		if took := w.now().Sub(start); took > time.Second {
			w.log.Warn("saving the state was slow", "reason", "took "+took.String()+" on "+w.store.Dir())
		}
	}
	w.report.Store(&r)
	for _, done := range j.done {
		done(err)
	}
}
