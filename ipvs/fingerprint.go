package ipvs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// Fingerprint condenses what decides which real server a new flow gets on
// this director: scheduler, scheduler flags, persistence and the destinations
// in slice order (for an observed service, the kernel's list order, which is
// the order the mh and sh tables are built from) with their weights and
// forwarding. Directors whose fingerprints for a service are equal pick the
// same real server for a flow they never saw, which is what keeps flows alive
// when ECMP moves them between directors; status shows it so operators can
// compare directors. The form is "<destinations>/<16 hex digits>".
//
// One kernel detail is invisible here: mh sizes a destination's share by its
// last non-zero weight, so a destination drained to weight 0 still holds its
// table slots, while one added at weight 0 holds none. Both show weight 0.
func Fingerprint(s Service) string {
	bits, _ := flagBits(s.Scheduler, s.Flags)
	buf := make([]byte, 0, 64+len(s.Destinations)*24)
	buf = append(buf, s.Scheduler...)
	buf = append(buf, 0)
	buf = binary.BigEndian.AppendUint32(buf, bits)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Persistence))
	for _, d := range s.Destinations {
		w := d.Weight
		if d.Draining {
			w = 0
		}
		a := d.Address.As16()
		buf = append(buf, a[:]...)
		buf = binary.BigEndian.AppendUint16(buf, d.Port)
		buf = binary.BigEndian.AppendUint32(buf, uint32(w))
		buf = append(buf, byte(d.Forwarding))
	}
	sum := sha256.Sum256(buf)
	return strconv.Itoa(len(s.Destinations)) + "/" + hex.EncodeToString(sum[:8])
}

// fpShards is how many maps the published fingerprints are split into: a
// change copies one shard (a sixty-fourth of the services), not all of them.
const fpShards = 64

// Fingerprints is an immutable snapshot of the fingerprint of every owned
// service, as the kernel holds it after an Apply. Reports share it with the
// handle; a later Apply copies only the shards it changes.
type Fingerprints struct {
	shards *[fpShards]map[Key]string
}

// Get returns k's fingerprint ("" when the service is not owned).
func (f Fingerprints) Get(k Key) string {
	if f.shards == nil {
		return ""
	}
	return f.shards[fpShard(k)][k]
}

// Len counts the services with a fingerprint.
func (f Fingerprints) Len() int {
	n := 0
	if f.shards != nil {
		for _, m := range f.shards {
			n += len(m)
		}
	}
	return n
}

// Map returns a copy of every fingerprint, for tests and tools.
func (f Fingerprints) Map() map[Key]string {
	out := make(map[Key]string, f.Len())
	if f.shards != nil {
		for _, m := range f.shards {
			for k, v := range m {
				out[k] = v
			}
		}
	}
	return out
}

// fpShard picks k's shard from the low bits of its address and port.
func fpShard(k Key) int {
	b := k.VIP.As16()
	return int(b[15]^b[14]^byte(k.Port)^byte(k.Port>>8)^k.Protocol) % fpShards
}

// fpTable is the handle's writable view of the fingerprints: shards already
// published are copied before their first change.
type fpTable struct {
	cur    *[fpShards]map[Key]string
	shared [fpShards]bool // shard published in a Report
	arr    bool           // cur itself published
}

// set records fp for k ("" removes it).
func (t *fpTable) set(k Key, fp string) {
	if t.cur == nil {
		t.cur = new([fpShards]map[Key]string)
	}
	i := fpShard(k)
	if old, ok := t.cur[i][k]; ok == (fp != "") && old == fp {
		return
	}
	if t.arr {
		c := *t.cur
		t.cur, t.arr = &c, false
	}
	if t.shared[i] || t.cur[i] == nil {
		m := make(map[Key]string, len(t.cur[i])+1)
		for kk, v := range t.cur[i] {
			m[kk] = v
		}
		t.cur[i], t.shared[i] = m, false
	}
	if fp == "" {
		delete(t.cur[i], k)
	} else {
		t.cur[i][k] = fp
	}
}

// publish returns the current snapshot; later changes copy what they touch.
func (t *fpTable) publish() Fingerprints {
	if t.cur == nil {
		t.cur = new([fpShards]map[Key]string)
	}
	t.arr = true
	for i := range t.shared {
		t.shared[i] = true
	}
	return Fingerprints{shards: t.cur}
}
