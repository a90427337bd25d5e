package dataplane

import "os"

// Prepare starts, on a goroutine of its own, the set-up moby/ipvs makes
// once per process before its first handle: it runs `modprobe -va ip_vs`
// and looks up the IPVS generic netlink family. Open waits for it if it
// has not finished. Called first thing, it overlaps with whatever the
// caller does before Open (the daemon reads its configuration): under
// emulation the fork and exec of modprobe, a dynamically linked program,
// cost a noticeable part of directord's start-up. Like Open it does
// nothing when the kernel has no IPVS (the family would be resolved as 0
// for the rest of the process). The returned channel is closed once the
// set-up is over. It opens a kernel handle, as Open does, and closes it.
func Prepare(opts ...Option) <-chan struct{} {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	done := make(chan struct{})
	if _, err := os.Stat(cfg.procIPVS); err != nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if k, err := cfg.newKernel(""); err == nil {
			k.Close()
		}
	}()
	return done
}
