#!/usr/bin/env bash
# Builds the Debian package bin/directord_<version>_<arch>.deb with dpkg-deb:
# both binaries (static, stripped, stamped by scripts/version.sh), the systemd
# units and sysusers entry, man pages directord(8), directorctl(8) and
# directord.yaml(5) generated from the code and docs/configuration.md, bash,
# zsh and fish completion for both binaries, the example configurations, and
# the monitoring kit (Prometheus rules, Grafana dashboard).
# Usage: scripts/package.sh [OUTDIR]   (default bin/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bin}
GO=${GO:-go}
arch=$(dpkg --print-architecture)
goarch=$($GO env GOARCH)
# The binary's version (v0.3.1, v0.3.1-4-gHASH, v0.0.0-N-gHASH before the
# first tag) as a Debian version that sorts the same way: a development
# build after a tag is "+N.gHASH", one before the first tag "~N.gHASH".
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
ldflags="$(bash scripts/version.sh)"
gover=$(sed -n 's/.*buildinfo.version=\([^ ]*\).*/\1/p' <<<"$ldflags")
debver=${gover#v}
case $debver in
0.0.0-*) debver="0.0.0~${debver#0.0.0-}" ;;
*-*) debver="${debver%%-*}+${debver#*-}" ;;
esac
debver=${debver//-/.}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
pkg=$root/pkg
install -d "$pkg/DEBIAN" "$pkg/usr/sbin" "$pkg/usr/bin" "$pkg/usr/lib/systemd/system" "$pkg/usr/lib/sysusers.d" \
	"$pkg/usr/lib/modules-load.d" "$pkg/usr/share/man/man8" "$pkg/usr/share/man/man5" \
	"$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
	"$pkg/usr/share/fish/vendor_completions.d" "$pkg/usr/share/doc/directord/examples" \
	"$pkg/usr/share/directord/prometheus" "$pkg/usr/share/directord/grafana" "$pkg/usr/share/lintian/overrides"

CGO_ENABLED=0 GOARCH=$goarch $GO build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" -o "$pkg/usr/sbin/directord" ./cmd/directord
CGO_ENABLED=0 GOARCH=$goarch $GO build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" -o "$pkg/usr/bin/directorctl" ./cmd/directorctl
d=$pkg/usr/sbin/directord c=$pkg/usr/bin/directorctl

install -m 0644 deploy/systemd/directord.service deploy/systemd/directord-realserver.service "$pkg/usr/lib/systemd/system/"
install -m 0644 deploy/systemd/directord.sysusers "$pkg/usr/lib/sysusers.d/directord.conf"
printf '# IPVS for directord (directord.service); its schedulers load on demand.\nip_vs\n' >"$pkg/usr/lib/modules-load.d/directord.conf"

"$d" __man | gzip -9n >"$pkg/usr/share/man/man8/directord.8.gz"
"$d" __man docs/configuration.md | gzip -9n >"$pkg/usr/share/man/man5/directord.yaml.5.gz"
"$c" __man | gzip -9n >"$pkg/usr/share/man/man8/directorctl.8.gz"
for b in "$d" "$c"; do
	n=$(basename "$b")
	"$b" completion bash >"$pkg/usr/share/bash-completion/completions/$n"
	"$b" completion zsh >"$pkg/usr/share/zsh/vendor-completions/_$n"
	"$b" completion fish >"$pkg/usr/share/fish/vendor_completions.d/$n.fish"
done

install -m 0644 examples/directord.yaml examples/local.yaml "$pkg/usr/share/doc/directord/examples/"
install -m 0644 deploy/prometheus/rules.yml "$pkg/usr/share/directord/prometheus/"
install -m 0644 deploy/grafana/directord.json "$pkg/usr/share/directord/grafana/"
install -m 0644 deploy/debian/copyright "$pkg/usr/share/doc/directord/copyright"
install -m 0644 deploy/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/directord"
date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'directord (%s) unstable; urgency=medium\n\n  * Build %s of Anycast Director.\n\n -- Anycast Director maintainers <maintainers@anycast-director.org>  %s\n' \
	"$debver" "$gover" "$date" | gzip -9n >"$pkg/usr/share/doc/directord/changelog.gz"
for s in postinst prerm postrm; do
	install -m 0755 "deploy/debian/$s" "$pkg/DEBIAN/$s"
done

size=$(du -k -s --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" deploy/debian/control >"$pkg/DEBIAN/control"
(cd "$pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$out/directord_${debver}_${arch}.deb
dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$deb" >/dev/null
echo "$deb"
