package vm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A cut-down copy of what depmod writes for Debian's 6.1 kernel, including
// the trap: libcrc32c needs crc32c only through modules.softdep.
const testModulesDep = `kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko:
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs_mh.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/dummy.ko.xz:
kernel/test/a.ko: kernel/test/b.ko
kernel/test/b.ko: kernel/test/a.ko
`

const testModulesSoftdep = `# Soft dependencies extracted from modules themselves.
softdep libcrc32c pre: crc32c
softdep ext4 pre: crypto-crc32c
softdep nf_conntrack post: nf_conntrack_helper
`

const testModulesAlias = `alias crc32c crc32c_intel
alias crc32c crc32c_generic
alias crypto-crc32c crc32c_generic
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
`

const testModulesBuiltin = `kernel/net/ipv6/ipv6.ko
kernel/net/unix/unix.ko
`

func testIndex(t *testing.T) *ModuleIndex {
	t.Helper()
	ix, err := ParseModuleIndex(strings.NewReader(testModulesDep), strings.NewReader(testModulesBuiltin),
		strings.NewReader(testModulesSoftdep), strings.NewReader(testModulesAlias))
	if err != nil {
		t.Fatalf("ParseModuleIndex: %v", err)
	}
	return ix
}

func TestResolveOrdersDependenciesAndSoftDependencies(t *testing.T) {
	ix := testIndex(t)
	tests := []struct {
		name       string
		reqs       []ModuleRequest
		want       []Module
		wantAbsent []string
	}{
		{
			name: "ip_vs pulls crc32c providers before libcrc32c, as optional",
			reqs: []ModuleRequest{{Name: "ip_vs_mh"}},
			want: []Module{
				{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko", Optional: true},
				{Name: "crc32c_generic", Path: "kernel/crypto/crc32c_generic.ko", Optional: true},
				{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},
				{Name: "nf_defrag_ipv4", Path: "kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko"},
				{Name: "nf_defrag_ipv6", Path: "kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko"},
				{Name: "nf_conntrack", Path: "kernel/net/netfilter/nf_conntrack.ko"},
				{Name: "ip_vs", Path: "kernel/net/netfilter/ipvs/ip_vs.ko"},
				{Name: "ip_vs_mh", Path: "kernel/net/netfilter/ipvs/ip_vs_mh.ko"},
			},
		},
		{
			name: "a soft dependency requested by name becomes required",
			reqs: []ModuleRequest{{Name: "libcrc32c"}, {Name: "crc32c_generic"}},
			want: []Module{
				{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko", Optional: true},
				{Name: "crc32c_generic", Path: "kernel/crypto/crc32c_generic.ko"},
				{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},
			},
		},
		{
			name: "shared dependencies load once, in modules.dep order",
			reqs: []ModuleRequest{{Name: "9pnet_virtio"}, {Name: "virtio"}},
			want: []Module{
				{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"},
				{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko"},
				{Name: "9pnet", Path: "kernel/net/9p/9pnet.ko"},
				{Name: "9pnet_virtio", Path: "kernel/net/9p/9pnet_virtio.ko"},
			},
		},
		{
			name:       "built-in modules are skipped and absent IfPresent ones reported",
			reqs:       []ModuleRequest{{Name: "ipv6"}, {Name: "ip_vs_twos", IfPresent: true}, {Name: "dummy"}},
			want:       []Module{{Name: "dummy", Path: "kernel/drivers/net/dummy.ko.xz"}},
			wantAbsent: []string{"ip_vs_twos"},
		},
		{
			name: "dashes and underscores are the same name",
			reqs: []ModuleRequest{{Name: "crc32c-intel"}},
			want: []Module{{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, absent, err := ix.Resolve(tc.reqs)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("load order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAbsent, absent); diff != "" {
				t.Errorf("absent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	ix := testIndex(t)
	tests := []struct {
		name    string
		reqs    []ModuleRequest
		wantErr string
	}{
		{"unknown required module", []ModuleRequest{{Name: "ip_vs_twos"}}, `kernel has no module "ip_vs_twos"`},
		{"dependency cycle", []ModuleRequest{{Name: "a"}}, "dependency cycle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ix.Resolve(tc.reqs)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Resolve error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseModuleIndexRejectsEmptyAndMalformed(t *testing.T) {
	for _, dep := range []string{"", "# only a comment\n", "kernel/x.ko\n"} {
		if _, err := ParseModuleIndex(strings.NewReader(dep), nil, nil, nil); err == nil {
			t.Errorf("ParseModuleIndex(%q) succeeded, want an error", dep)
		}
	}
}

func TestModuleName(t *testing.T) {
	tests := map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"kernel/drivers/net/dummy.ko.xz":         "dummy",
		"kernel/net/9p/9pnet_virtio.ko.zst":      "9pnet_virtio",
		"kernel/fs/overlayfs/overlay.ko.gz":      "overlay",
	}
	for in, want := range tests {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaultModulesCoverIPVSAndLabLinks(t *testing.T) {
	got := map[string]bool{}
	for _, r := range DefaultModules() {
		got[r.Name] = !r.IfPresent
	}
	for _, name := range []string{"ip_vs", "nf_conntrack", "veth", "dummy", "bridge", "ipip", "tunnel4", "ip6_tunnel", "crc32c_generic", "9p", "overlay", "virtio_console"} {
		if required, ok := got[name]; !ok || !required {
			t.Errorf("DefaultModules lacks required %s", name)
		}
	}
	for _, s := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"} {
		if _, ok := got["ip_vs_"+s]; !ok {
			t.Errorf("DefaultModules lacks scheduler ip_vs_%s", s)
		}
	}
}
