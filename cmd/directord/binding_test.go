package main

import (
	"strings"
	"testing"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing/kernel"
)

// TestVIPBinding: auto picks the address binding only where the kernel keeps
// IFA_PROTO, never with announce: kernel, and the configuration can force
// either.
func TestVIPBinding(t *testing.T) {
	cases := []struct {
		want     config.VIPBinding
		announce config.Announce
		release  string
		got      kernel.Binding
		why      string
	}{
		{config.BindingAuto, config.AnnounceBGP, "6.1.0-56-amd64", kernel.BindAddress, "keeps the address protocol mark"},
		{config.BindingAuto, config.AnnounceNone, "5.15.0-91-generic", kernel.BindLocalRoute, "IFA_PROTO needs Linux 6.1"},
		{config.BindingAuto, config.AnnounceBGP, "4.18.0-553.el8_10.x86_64", kernel.BindLocalRoute, "IFA_PROTO needs Linux 6.1"},
		{config.BindingAuto, config.AnnounceKernel, "6.1.0-56-amd64", kernel.BindLocalRoute, "announce: kernel"},
		{config.BindingLocalRoute, config.AnnounceBGP, "6.1.0-56-amd64", kernel.BindLocalRoute, "director.vip_binding: local-route"},
		{config.BindingAddress, config.AnnounceKernel, "6.1.0-56-amd64", kernel.BindAddress, "director.vip_binding: address"},
	}
	for _, c := range cases {
		got, why := vipBinding(c.want, c.announce, c.release)
		if got != c.got || !strings.Contains(why, c.why) {
			t.Errorf("vipBinding(%s, %s, %q) = %s (%s), want %s (%s)", c.want, c.announce, c.release, got, why, c.got, c.why)
		}
	}
}
