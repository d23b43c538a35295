// Package verifierv1 is the generated gRPC code of verifier.proto, the wire
// contract between handoff and its verifier plugins. The path is public so
// that SDKs in other languages can vendor verifier.proto (see
// docs/plugin-protocol.md); in Go only providers/sdk and package providers
// import it, and a Go plugin author never sees these types.
//
// The proto package (handoff.verifier.v1) and every field number are the
// wire contract: moving the file changed the Go import path only.
//
// Regenerate with `go generate ./providers/proto/...` after
// installing protoc 3.21.12 (Debian: apt-get install protobuf-compiler),
// protoc-gen-go v1.36.12 (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12)
// and protoc-gen-go-grpc v1.6.2 (go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2).
package verifierv1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative verifier.proto
