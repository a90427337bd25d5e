package console

import (
	"time"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// rateWindow is how far back rates look. directord refreshes IPVS counters
// on its resync tick (5 s by default), so a window of two ticks smooths the
// steps into a rate.
const rateWindow = 10 * time.Second

// sample is one reading of a backend's counters.
type sample struct {
	at                   time.Time
	conns, bytesIn, bOut uint64
}

// rates turns counter readings into per-second rates over rateWindow. It
// belongs to one director's poller goroutine.
type rates struct {
	series map[string][]sample
}

func newRates() *rates { return &rates{series: map[string][]sample{}} }

// observe records a status's counters at at and returns the rates of every
// backend by key. A counter that went backwards (the destination was
// re-created) restarts its series.
func (r *rates) observe(st *directorv1.GetStatusResponse, at time.Time) map[string]Numbers {
	out := map[string]Numbers{}
	seen := map[string]bool{}
	for _, svc := range st.GetServices() {
		for _, b := range svc.GetBackends() {
			key := backendKey(svc.GetName(), b.GetAddress(), b.GetPort())
			seen[key] = true
			c := b.GetCounters()
			out[key] = r.add(key, sample{at, c.GetConnections(), c.GetBytesIn(), c.GetBytesOut()})
		}
	}
	for key := range r.series {
		if !seen[key] {
			delete(r.series, key)
		}
	}
	return out
}

func (r *rates) add(key string, s sample) Numbers {
	ser := r.series[key]
	if n := len(ser); n > 0 {
		last := ser[n-1]
		if s.conns < last.conns || s.bytesIn < last.bytesIn || s.bOut < last.bOut {
			ser = nil
		}
	}
	ser = append(ser, s)
	// Keep the newest sample at least rateWindow old, and everything after.
	cut := 0
	for i := range ser {
		if s.at.Sub(ser[i].at) >= rateWindow {
			cut = i
		}
	}
	ser = ser[cut:]
	r.series[key] = ser
	first := ser[0]
	dt := s.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return Numbers{}
	}
	return Numbers{CPS: float64(s.conns-first.conns) / dt, BPSIn: float64(s.bytesIn-first.bytesIn) / dt,
		BPSOut: float64(s.bOut-first.bOut) / dt}
}
