package console

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"
)

// minInterval spaces view updates: changes within it are sent together.
const minInterval = 200 * time.Millisecond

// hub rebuilds the view when a director changed and hands the encoded view
// to every browser. A browser that reads slowly only ever gets the latest
// view: each subscriber has a one-slot mailbox that is overwritten.
type hub struct {
	wake chan struct{}

	mu     sync.Mutex
	latest []byte
	subs   map[chan []byte]struct{}
}

func newHub() *hub {
	return &hub{wake: make(chan struct{}, 1), subs: map[chan []byte]struct{}{}}
}

// poke marks the view stale (never blocks).
func (h *hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run rebuilds and broadcasts the view after every poke, at most every
// minInterval, until ctx ends.
func (h *hub) run(ctx context.Context, build func() View) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		}
		data, err := json.Marshal(build())
		if err != nil {
			continue
		}
		h.publish(data)
		select {
		case <-ctx.Done():
			return
		case <-time.After(minInterval):
		}
	}
}

func (h *hub) publish(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latest = data
	for ch := range h.subs {
		select {
		case <-ch: // drop the unread older view
		default:
		}
		ch <- data
	}
}

// subscribe returns a mailbox primed with the latest view, and its cancel.
func (h *hub) subscribe() (chan []byte, func()) {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	if h.latest != nil {
		ch <- h.latest
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// handleStream sends the view as server-sent events ("view") whenever it
// changes, with a comment every 15 s to keep proxies from closing the
// connection.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	ch, cancel := s.hub.subscribe()
	defer cancel()
	s.hub.poke()
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			w.Write([]byte("event: view\ndata: "))
			w.Write(data)
			w.Write([]byte("\n\n"))
		case <-keep.C:
			w.Write([]byte(": keep-alive\n\n"))
		}
		fl.Flush()
	}
}

// handleView answers the view once (for scripts and tests).
func (s *Server) handleView(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.view())
}

// sessionInfo tells the page who is signed in and what they may do.
type sessionInfo struct {
	User         string   `json:"user"`
	Role         string   `json:"role"`
	CanAct       bool     `json:"can_act"`
	ActionsOff   bool     `json:"actions_off"`
	CSRF         string   `json:"csrf,omitempty"`
	Directors    []string `json:"directors"`
	Anonymous    bool     `json:"anonymous"`
	ReadOnlyNote string   `json:"read_only_note,omitempty"`
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	info := sessionInfo{User: id.name, Role: id.role, ActionsOff: !s.allowActions, Anonymous: id.name == ""}
	info.CanAct = s.allowActions && id.canAct()
	if info.CanAct {
		info.CSRF = s.csrfToken(id)
	}
	switch {
	case !s.allowActions:
		info.ReadOnlyNote = "read-only console (start it with --allow-actions to act)"
	case id.name == "":
		info.ReadOnlyNote = "anonymous and read-only (start the console with --users to sign in)"
	case !id.canAct():
		info.ReadOnlyNote = "read-only user"
	}
	for _, d := range s.directors {
		info.Directors = append(info.Directors, d.Name)
	}
	writeJSON(w, http.StatusOK, info)
}

// newestEvents sorts the fleet's events by time and keeps the newest n.
func newestEvents(evs []EventRow, n int) []EventRow {
	slices.SortStableFunc(evs, func(a, b EventRow) int { return a.Time.Compare(b.Time) })
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	return evs
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// apiError is the JSON body of a refused request.
type apiError struct {
	Error string `json:"error"`
}
