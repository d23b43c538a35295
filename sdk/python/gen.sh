#!/bin/sh
# Regenerates handoff_plugin/_pb from the protos, with Debian's protoc
# (protobuf-compiler 3.21, matching python3-protobuf 4.21). Run from any
# directory; the generated files are committed, so plugins need no protoc.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
verifier=${VERIFIER_PROTO_DIR:-$here/../../providers/proto/verifier/v1}
out=${1:-$here/handoff_plugin/_pb}
mkdir -p "$out"
protoc -I "$here/proto" -I "$verifier" -I /usr/include --python_out="$out" \
	health.proto grpc_broker.proto grpc_controller.proto rpc_status.proto verifier.proto
