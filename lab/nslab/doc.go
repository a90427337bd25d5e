// Package nslab is the lab's one harness core: network namespaces with a
// per-run unique name prefix (optionally with their own mount and UTS
// namespaces, like a container), veth links and bridges, processes started
// inside them with their output captured (a log file per process and lines
// to wait for), FRR's and BIRD's start-up, readers of the kernel FIB and of
// route changes as they happen, and waiting with deadlines.
//
// Everything returns errors; it never fails a test itself. Tests use it
// through lab/netlab, which wraps it for testing.TB; lab/runner builds
// containerlab topologies out of it, for the tests, make e2e and make demo.
//
// Every process is owned by PID. Close kills them, then any other process
// left in a node's namespace, then deletes the namespaces; the folder (with
// the logs) stays until RemoveDir. The package shells out to iproute2 (ip),
// nsenter, unshare, sysctl and FRR's vtysh or BIRD's birdc; it sets no
// process-wide state and never enters a namespace itself, so labs may run in
// parallel.
//
// Typical use:
//
//	lab, err := nslab.New(nslab.Options{})
//	defer lab.Close()
//	rtr, err := lab.AddNode(ctx, "rtr", nslab.NodeOptions{})
//	d1, err := lab.AddNode(ctx, "d1", nslab.NodeOptions{})
//	err = nslab.Link(ctx, rtr, "eth1", d1, "eth1", 0)
//	frr, err := nslab.StartFRR(ctx, rtr, nslab.FRRSpec{Daemons: nslab.FRRDaemons("bgpd", "bfdd"), Config: conf})
//	changes, err := nslab.CountRouteChanges(ctx, rtr, "198.18.0.10", func() error { ... })
package nslab
