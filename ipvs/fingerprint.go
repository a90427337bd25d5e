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
	bits, _ := FlagBits(s.Scheduler, s.Flags)
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
