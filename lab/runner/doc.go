// Package runner executes a containerlab topology file without Docker, in
// network namespaces, so that the topology users deploy with containerlab
// is the one the end-to-end tests run (inside the VM of lab/vm, whose
// kernel has IPVS).
//
// The mapping, each piece read from the topology file and nothing else:
//
//   - a node of kind linux becomes a network namespace (named prefix+node)
//     plus a mount and a UTS namespace held by a sleeping holder process:
//     the hostname is the node name, /run and /tmp are fresh tmpfs, every
//     bind is mounted at its container path (over a private writable
//     overlay of the nearest existing folder when the path must be
//     created), read-only where the bind says ro;
//   - the node's image is emulated with the machine's own userspace as the
//     caller's Options.Images say: its files (for example built binaries at
//     /usr/local/bin), its environment, and its default role when the node
//     has no cmd (RoleFRR: FRR's daemons from the bound /etc/frr/daemons,
//     then vtysh -b with the bound /etc/frr/frr.conf);
//   - sysctls are set in the node's namespace before it starts; cmd runs
//     as the container's main process; exec commands run after all links
//     exist, in file order, as containerlab runs them;
//   - a node of kind bridge becomes a Linux bridge in a namespace that plays
//     the container host (prefix+"_host");
//   - each link becomes a veth pair named after its endpoints; a bridge
//     endpoint stays on the container host and joins the bridge.
//
// Not emulated: the management network (containerlab's eth0 and its default
// route), image contents beyond Options.Images, and topology fields other
// than those listed by Load (it refuses them by name). Processes are owned
// by PID and Destroy removes every process and namespace the lab created.
package runner
