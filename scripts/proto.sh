#!/usr/bin/env bash
# Regenerates the Go code of proto/ (make proto). protoc comes from Debian's
# protobuf-compiler, the well-known types it imports (google/protobuf/*.proto)
# from libprotobuf-dev; the Go plugins are installed from the module proxy at the
# versions pinned below (matching go.mod's protobuf and grpc) into lab/.cache/bin,
# so the generated code does not depend on whatever is on the PATH.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

PROTOC_GEN_GO_VERSION=v1.36.12      # google.golang.org/protobuf, as in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2   # google.golang.org/grpc/cmd/protoc-gen-go-grpc (own module)

if ! command -v protoc >/dev/null; then
	echo "proto.sh: protoc not found: install Debian's protobuf-compiler and libprotobuf-dev (the well-known types): apt-get install -y protobuf-compiler libprotobuf-dev" >&2
	exit 1
fi

BIN=$ROOT/lab/.cache/bin
mkdir -p "$BIN"
install_plugin() { # name module version
	local stamp=$BIN/.$1.version
	if [[ -x $BIN/$1 && -f $stamp && $(cat "$stamp") == "$3" ]]; then
		return
	fi
	echo "proto.sh: installing $1 $3" >&2
	GOBIN=$BIN GOFLAGS=-mod=mod go install "$2@$3"
	echo "$3" >"$stamp"
}
install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

mapfile -t files < <(find proto -name "*.proto" | sort)
PATH=$BIN:$PATH protoc -I proto \
	--go_out=proto --go_opt=paths=source_relative \
	--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	"${files[@]}"
echo "proto.sh: generated Go code for ${files[*]}" >&2
