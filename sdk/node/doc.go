// Package node holds the Go side of the Node.js plugin SDK (the
// handoff-plugin-sdk package in this folder): a test that runs its
// `node --test` unit tests, so that `go test ./...` covers them, and
// checks that its copy of the contract is the repository's. See README.md.
package node
