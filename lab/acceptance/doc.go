// Package acceptance holds the daemon-level acceptance tests of issue 4:
// the real directord binary in director network namespaces, announcing
// `local` services to a router namespace that runs FRR 8.4 (zebra, bgpd,
// bfdd, ospfd) configured by `directord router-config`, with every
// assertion read from the router's kernel FIB.
//
// The tests are privileged (build tag `linux && privileged`, names
// TestPrivileged...) and run as root with `make test-privileged`, or alone:
//
//	go test -tags privileged -count=1 -run Privileged -v ./lab/acceptance
//
// BenchmarkPrivilegedVerdictToFIB measures the time from a health verdict
// to the router's FIB change:
//
//	go test -tags privileged -run '^$' -bench PrivilegedVerdictToFIB -benchtime 20x ./lab/acceptance
//
// The package has no non-test code; this file only documents it.
package acceptance
