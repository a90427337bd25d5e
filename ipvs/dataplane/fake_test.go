package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	moby "github.com/moby/ipvs"

	"github.com/anycast-director/director/ipvs"
)

// flagHashed is IP_VS_SVC_F_HASHED, which the kernel sets on every dumped
// service.
const flagHashed = 0x0002

// fakeKernel is a stateful in-memory IPVS that behaves like the kernel where
// this package depends on it: new destinations go to the head of the list,
// deleted destinations with connections go to a trash and come back with
// them, flags read back with the internal "hashed" bit, and an impossible
// operation (adding what exists, changing or deleting what does not) fails
// the test, because Apply must never issue one.
type fakeKernel struct {
	t      testing.TB
	strict bool // impossible operations fail the test

	svcs   map[fakeKey]*fakeService
	trash  map[fakeDestKey]moby.Destination
	writes int
	reads  int
	gen    int // service generation counter, to detect re-creation
	fail   map[string]error
	failGS error // GetServices error
	closed bool
}

type fakeKey struct {
	af, proto uint16
	addr      netip.Addr
	port      uint16
}

type fakeDestKey struct {
	svc  fakeKey
	addr netip.Addr
	port uint16
}

type fakeService struct {
	svc   moby.Service
	gen   int
	dests []moby.Destination // kernel list order
}

func newFakeKernel(t testing.TB) *fakeKernel {
	return &fakeKernel{t: t, strict: true, svcs: map[fakeKey]*fakeService{}, trash: map[fakeDestKey]moby.Destination{}, fail: map[string]error{}}
}

func fkey(s *moby.Service) fakeKey {
	a, _ := addrFromKernel(s.Address, s.AddressFamily)
	return fakeKey{af: s.AddressFamily, proto: s.Protocol, addr: a, port: s.Port}
}

func (k fakeKey) String() string {
	return ipvs.Key{VIP: k.addr, Port: k.port, Protocol: uint8(k.proto)}.String()
}

func fdaddr(d *moby.Destination) netip.Addr {
	a, _ := addrFromKernel(d.Address, d.AddressFamily)
	return a
}

func (f *fakeKernel) impossible(format string, args ...any) {
	if f.strict {
		f.t.Helper()
		f.t.Errorf("fake kernel: impossible operation: "+format, args...)
	}
}

// injected returns the error injected for op on key, if any.
func (f *fakeKernel) injected(op string, k fakeKey) error {
	return f.fail[op+" "+k.String()]
}

func (f *fakeKernel) GetServices() ([]*moby.Service, error) {
	f.reads++
	if f.failGS != nil {
		return nil, f.failGS
	}
	var out []*moby.Service
	for _, s := range f.svcs {
		c := s.svc
		c.Flags |= flagHashed
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeKernel) GetDestinations(s *moby.Service) ([]*moby.Destination, error) {
	f.reads++
	k := fkey(s)
	if err := f.injected("get-dests", k); err != nil {
		return nil, err
	}
	fs := f.svcs[k]
	if fs == nil {
		return nil, syscall.ESRCH
	}
	out := make([]*moby.Destination, len(fs.dests))
	for i := range fs.dests {
		d := fs.dests[i]
		out[i] = &d
	}
	return out, nil
}

func (f *fakeKernel) checkService(s *moby.Service) error {
	if s.AddressFamily == syscall.AF_INET6 && (s.Netmask < 1 || s.Netmask > 128) {
		return syscall.EINVAL
	}
	if !slices.Contains([]string{"none", "rr", "wrr", "lc", "wlc", "sh", "dh", "mh", "sed", "nq"}, s.SchedName) {
		return syscall.ENOENT
	}
	return nil
}

func (f *fakeKernel) NewService(s *moby.Service) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("new-service", k); err != nil {
		return err
	}
	if f.svcs[k] != nil {
		f.impossible("create existing service %s", k)
		return syscall.EEXIST
	}
	if err := f.checkService(s); err != nil {
		return err
	}
	f.gen++
	f.svcs[k] = &fakeService{svc: *s, gen: f.gen}
	return nil
}

func (f *fakeKernel) UpdateService(s *moby.Service) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("update-service", k); err != nil {
		return err
	}
	fs := f.svcs[k]
	if fs == nil {
		f.impossible("update missing service %s", k)
		return syscall.ESRCH
	}
	if err := f.checkService(s); err != nil {
		return err
	}
	fs.svc = *s
	return nil
}

func (f *fakeKernel) DelService(s *moby.Service) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("del-service", k); err != nil {
		return err
	}
	if f.svcs[k] == nil {
		f.impossible("delete missing service %s", k)
		return syscall.ESRCH
	}
	delete(f.svcs, k)
	return nil
}

func (f *fakeKernel) destIndex(fs *fakeService, d *moby.Destination) int {
	return slices.IndexFunc(fs.dests, func(x moby.Destination) bool {
		return fdaddr(&x) == fdaddr(d) && x.Port == d.Port
	})
}

func (f *fakeKernel) NewDestination(s *moby.Service, d *moby.Destination) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("new-dest", k); err != nil {
		return err
	}
	fs := f.svcs[k]
	if fs == nil {
		f.impossible("add destination to missing service %s", k)
		return syscall.ESRCH
	}
	if f.destIndex(fs, d) >= 0 {
		f.impossible("add existing destination %s to %s", fdaddr(d), k)
		return syscall.EEXIST
	}
	if d.Weight < 0 {
		return syscall.ERANGE
	}
	nd := moby.Destination{Address: d.Address, Port: d.Port, Weight: d.Weight,
		ConnectionFlags: d.ConnectionFlags & fwdMask, AddressFamily: d.AddressFamily}
	tk := fakeDestKey{svc: k, addr: fdaddr(d), port: d.Port}
	if old, ok := f.trash[tk]; ok { // ip_vs_trash_get_dest: connections come back
		nd.ActiveConnections, nd.InactiveConnections = old.ActiveConnections, old.InactiveConnections
		delete(f.trash, tk)
	}
	fs.dests = slices.Insert(fs.dests, 0, nd)
	return nil
}

func (f *fakeKernel) UpdateDestination(s *moby.Service, d *moby.Destination) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("update-dest", k); err != nil {
		return err
	}
	fs := f.svcs[k]
	if fs == nil {
		f.impossible("update destination of missing service %s", k)
		return syscall.ESRCH
	}
	i := f.destIndex(fs, d)
	if i < 0 {
		f.impossible("update missing destination %s of %s", fdaddr(d), k)
		return syscall.ENOENT
	}
	fs.dests[i].Weight = d.Weight
	fs.dests[i].ConnectionFlags = d.ConnectionFlags & fwdMask
	return nil
}

func (f *fakeKernel) DelDestination(s *moby.Service, d *moby.Destination) error {
	f.writes++
	k := fkey(s)
	if err := f.injected("del-dest", k); err != nil {
		return err
	}
	fs := f.svcs[k]
	if fs == nil {
		f.impossible("delete destination of missing service %s", k)
		return syscall.ESRCH
	}
	i := f.destIndex(fs, d)
	if i < 0 {
		f.impossible("delete missing destination %s of %s", fdaddr(d), k)
		return syscall.ENOENT
	}
	if old := fs.dests[i]; old.ActiveConnections+old.InactiveConnections > 0 {
		f.trash[fakeDestKey{svc: k, addr: fdaddr(d), port: d.Port}] = old
	}
	fs.dests = slices.Delete(fs.dests, i, i+1)
	return nil
}

func (f *fakeKernel) Close() { f.closed = true }

// service returns the fake's view of key as an observed Service, or nil.
func (f *fakeKernel) service(k ipvs.Key) *ipvs.Service {
	fs := f.svcs[fkey(kernelKey(k))]
	if fs == nil {
		return nil
	}
	s, _ := serviceFromKernel(&fs.svc)
	for i := range fs.dests {
		d, _ := destFromKernel(&fs.dests[i])
		s.Destinations = append(s.Destinations, d)
	}
	return &s
}

// order lists key's destinations in kernel order as "addr:port/weight".
func (f *fakeKernel) order(k ipvs.Key) []string {
	s := f.service(k)
	if s == nil {
		return nil
	}
	var out []string
	for _, d := range s.Destinations {
		out = append(out, fmt.Sprintf("%s/%d", d.AddrPort(), d.Weight))
	}
	return out
}

// seed creates a service behind Apply's back (not counted as a write), with
// destinations in the given kernel order.
func (f *fakeKernel) seed(s ipvs.Service) {
	ks := kernelService(s)
	f.gen++
	fs := &fakeService{svc: *ks, gen: f.gen}
	for _, d := range s.Destinations {
		kd := kernelDest(d)
		kd.ActiveConnections, kd.InactiveConnections = d.Conns.Active, d.Conns.Inactive
		fs.dests = append(fs.dests, *kd)
	}
	f.svcs[fkey(ks)] = fs
}

// setConns sets a destination's connection counters.
func (f *fakeKernel) setConns(k ipvs.Key, addr netip.AddrPort, active, inactive int) {
	fs := f.svcs[fkey(kernelKey(k))]
	if fs == nil {
		f.t.Fatalf("setConns: no service %s", k)
	}
	for i := range fs.dests {
		if fdaddr(&fs.dests[i]) == addr.Addr() && fs.dests[i].Port == addr.Port() {
			fs.dests[i].ActiveConnections, fs.dests[i].InactiveConnections = active, inactive
			return
		}
	}
	f.t.Fatalf("setConns: no destination %s in %s", addr, k)
}

func (f *fakeKernel) generation(k ipvs.Key) int {
	if fs := f.svcs[fkey(kernelKey(k))]; fs != nil {
		return fs.gen
	}
	return 0
}
