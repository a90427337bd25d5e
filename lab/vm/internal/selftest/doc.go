// Package selftest holds the VM runner's own vm-tagged tests: run by
// `make test-vm` through cmd/vmtest, they prove the whole path (compile on
// the host, boot, run as root in the package folder, IPVS present) end to end.
package selftest
