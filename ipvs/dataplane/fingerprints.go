package dataplane

import "github.com/anycast-director/director/ipvs"

// fpShards is how many maps the published fingerprints are split into: a
// change copies one shard (a sixty-fourth of the services), not all of them.
const fpShards = 64

// Fingerprints is an immutable snapshot of the fingerprint of every owned
// service, as the kernel holds it after an Apply. Reports share it with the
// handle; a later Apply copies only the shards it changes.
type Fingerprints struct {
	shards *[fpShards]map[ipvs.Key]string
}

// Get returns k's fingerprint ("" when the service is not owned).
func (f Fingerprints) Get(k ipvs.Key) string {
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
func (f Fingerprints) Map() map[ipvs.Key]string {
	out := make(map[ipvs.Key]string, f.Len())
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
func fpShard(k ipvs.Key) int {
	b := k.VIP.As16()
	return int(b[15]^b[14]^byte(k.Port)^byte(k.Port>>8)^k.Protocol) % fpShards
}

// fpTable is the handle's writable view of the fingerprints: shards already
// published are copied before their first change.
type fpTable struct {
	cur    *[fpShards]map[ipvs.Key]string
	shared [fpShards]bool // shard published in a Report
	arr    bool           // cur itself published
}

// set records fp for k ("" removes it).
func (t *fpTable) set(k ipvs.Key, fp string) {
	if t.cur == nil {
		t.cur = new([fpShards]map[ipvs.Key]string)
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
		m := make(map[ipvs.Key]string, len(t.cur[i])+1)
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
		t.cur = new([fpShards]map[ipvs.Key]string)
	}
	t.arr = true
	for i := range t.shared {
		t.shared[i] = true
	}
	return Fingerprints{shards: t.cur}
}
