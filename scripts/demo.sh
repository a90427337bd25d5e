#!/usr/bin/env bash
# make demo: on a Debian machine, install what the lab needs, build the
# programs and run the lab demo (lab/cmd/demo) in a VM with Debian's IPVS
# kernel. It ends by itself after a few minutes and leaves nothing running.
# Extra arguments go to the demo (for example -timeout 15m).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (the lab creates network namespaces inside the VM, and deps.sh installs packages)" >&2
	exit 1
fi
bash scripts/deps.sh demo
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		GO=/usr/local/go/bin/go
	else
		echo "demo: Go $(sed -n 's/^go //p' go.mod) or newer is needed (https://go.dev/dl/); Debian's golang package is too old" >&2
		exit 1
	fi
fi
exec "$GO" run ./lab/cmd/demo "$@"
