#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian 12 machine, idempotently.
# Usage: scripts/deps.sh [test|demo]
set -euo pipefail
pkgs=(frr bird2 iproute2 nftables ipvsadm qemu-system-x86 busybox-static kmod cpio xz-utils
      protobuf-compiler libprotobuf-dev prometheus curl jq systemd util-linux chromium
      lintian man-db zsh fish keepalived)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
