package node

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// need skips the test on a developer's machine, and fails it under
// CI=true, when err says something the test needs is missing.
func need(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: .ci/run must install it): %v", what, err)
	}
	t.Skipf("%s: %v", what, err)
}

// TestNodeUnitTests runs the SDK's own tests (test/*.test.mjs) with
// `node --test`, after `npm ci --prefix sdk/node`.
func TestNodeUnitTests(t *testing.T) {
	node, err := exec.LookPath("node")
	need(t, err, "node is not installed")
	_, err = os.Stat(filepath.Join("node_modules", "@grpc", "grpc-js", "package.json"))
	need(t, err, "sdk/node/node_modules is not installed (npm ci --prefix sdk/node)")
	cmd := exec.Command(node, "--test", "--test-reporter=dot", "test/")
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/: %v\n%s", err, out)
	}
}

// TestProtoIsTheContract checks the SDK's copy of verifier.proto (npm
// pack ships it; the SDK loads it at run time) is the repository's.
func TestProtoIsTheContract(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "..", "providers", "proto", "verifier", "v1", "verifier.proto"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("proto", "verifier.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sdk/node/proto/verifier.proto differs from providers/proto/verifier/v1/verifier.proto: copy it over")
	}
}

// TestInstalledCopyIsCurrent checks the copy of the SDK that `npm ci`
// installed into examples/plugin-node (the tests of the Node example and
// the host's Node benchmarks run it) is this folder's: after changing the
// SDK, run `npm ci --prefix examples/plugin-node` again.
func TestInstalledCopyIsCurrent(t *testing.T) {
	installed := filepath.Join("..", "..", "examples", "plugin-node", "node_modules", "handoff-plugin-sdk")
	_, err := os.Stat(installed)
	need(t, err, "examples/plugin-node/node_modules is not installed (npm ci --prefix examples/plugin-node)")
	files, err := filepath.Glob("*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no SDK sources: %v", err)
	}
	protos, _ := filepath.Glob(filepath.Join("proto", "*.proto"))
	for _, f := range append(files, protos...) {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(installed, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("examples/plugin-node/node_modules/handoff-plugin-sdk/%s is not sdk/node's (run npm ci --prefix examples/plugin-node): %v", f, err)
		}
	}
}
