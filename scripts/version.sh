#!/usr/bin/env bash
# Prints the -ldflags that stamp a build with its version, commit and date
# (internal/buildinfo). The version is the nearest v* tag as `git describe`
# gives it (v0.3.1, or v0.3.1-4-gabcdef123456 after it); before the first tag
# it is v0.0.0-<commits>-g<hash>, which sorts below any release. A checkout
# with local changes gets -dirty. SOURCE_DATE_EPOCH fixes the build date for
# reproducible packages. Outside a git checkout it prints v0.0.0-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=github.com/anycast-director/director/internal/buildinfo
if git rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git rev-parse HEAD)
	dirty=$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
	if version=$(git describe --tags --match 'v[0-9]*' --abbrev=12 2>/dev/null); then
		version+=$dirty
	else
		version="v0.0.0-$(git rev-list --count HEAD)-g$(git rev-parse --short=12 HEAD)$dirty"
	fi
else
	commit=unknown version=v0.0.0-dev
fi
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
echo "-X $pkg.version=$version -X $pkg.commit=$commit -X $pkg.date=$date"
