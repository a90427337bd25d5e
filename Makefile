# Anycast Director. `make test` runs every test (as root: privileged netns tests
# with real FRR on this host, IPVS tests and the end-to-end lab inside a VM).
# `make demo` runs the lab demo. Both install what they need (scripts/deps.sh).

GO       ?= go
BIN      := bin
PKGS     := ./...
LDFLAGS  := $(shell bash scripts/version.sh)

.PHONY: all build package lint test test-unit test-privileged test-vm e2e bench bench-compare proto demo deps clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Debian package with both binaries, units, man pages, completion, examples and
# the monitoring kit (scripts/package.sh); tested by deploy's TestPackage.
package:
	bash scripts/package.sh $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) vet -tags privileged $(PKGS)
	$(GO) vet -tags vm $(PKGS)

# Unit tests: no root, no network beyond loopback, race detector on; then
# the scale tests (TestAtScale..., built with !race), whose timing means
# nothing under the race detector, without it.
# -timeout: the race detector on a busy 2-core machine takes cmd/directord
# past go test's default 10 minutes (it takes about 4 on a quiet one).
test-unit:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	$(GO) test -count=1 -timeout 30m -run 'AtScale' $(PKGS)

# Everything: what CI and a newcomer run.
test: deps lint test-unit test-privileged test-vm e2e

deps:
	bash scripts/deps.sh test

clean:
	rm -rf $(BIN)

# Privileged tests: root, fresh network namespaces, real FRR, on this host's kernel.
test-privileged: build
	$(GO) test -tags privileged -count=1 -p 1 -timeout 20m -run 'Privileged' ./...

# IPVS tests: compiled here, run as root inside a throwaway VM with Debian's kernel.
test-vm: build
	DIRECTORCTL_BIN=$(CURDIR)/$(BIN)/directorctl DIRECTORD_BIN=$(CURDIR)/$(BIN)/directord $(GO) run ./lab/vm/cmd/vmtest -tags vm -timeout 15m -skip '^(TestVMConsole|TestVMCrashAnywhere)$$' ./ipvs/... ./lab/vm/internal/selftest ./lab/compare ./cmd/directord
	# Crash anywhere (50 SIGKILLs with 1,000 services): its own VM, so its minutes do not eat the
	# others' budget (each kill, restart and check took 8 to 16 s at a load average of 20 on 2 cores).
	# CRASH_KILLS=10 (environment) runs 10 kills instead of 50, to try it on a patched daemon.
	$(GO) run ./lab/vm/cmd/vmtest -tags vm -timeout 30m -run '^TestVMCrashAnywhere$$' ./cmd/directord
	# The console in Chromium: its own VM, as Chromium takes minutes to start under emulation.
	$(GO) run ./lab/vm/cmd/vmtest -tags vm -timeout 15m -run '^TestVMConsole$$' ./cmd/directord

# End-to-end lab (containerlab.yml executed in network namespaces inside the VM).
e2e:
	$(GO) run ./lab/cmd/e2e

# Benchmarks: every figure with its target and verdict, written to BENCH.md
# with the commit, date, CPU and kernel of the machine that ran them.
bench: deps build
	bash scripts/bench.sh

# directord against keepalived in one VM boot, N = 100 and 1,000 services,
# distinct and shared check targets, 3 repetitions: BENCH-compare.md (about
# an hour under emulation). TestVMCompareSmoke in make test-vm runs it at N=10.
bench-compare: deps build
	$(GO) run ./lab/cmd/benchcompare -directord $(CURDIR)/$(BIN)/directord -out BENCH-compare.md

proto:
	bash scripts/proto.sh

demo:
	bash scripts/demo.sh
