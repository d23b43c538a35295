// Package pythontest finds the Python the Python SDK runs on, for Go
// tests that run Python plugins or the SDK's own unit tests.
package pythontest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/handoffd/handoff/providers"
)

// Interpreter is Debian's Python, which has python3-grpcio: the one the
// SDK's examples name in their shebang. A python3 found on PATH (pyenv,
// a virtualenv) may lack the Debian packages.
const Interpreter = "/usr/bin/python3"

// Packages are the Debian packages the SDK needs; .ci/run installs them.
const Packages = "python3-grpcio python3-protobuf python3-cryptography"

// Require returns Interpreter after checking that it imports grpc,
// protobuf and cryptography. Without them the test fails under CI=true
// (CI must have installed them) and is skipped elsewhere.
func Require(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(Interpreter, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput()
	if err == nil {
		return Interpreter
	}
	msg := Interpreter + " cannot run the Python SDK (apt-get install " + Packages + "): " + err.Error() + ": " + string(out)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Unittest runs `Interpreter -m unittest discover -s dir -t dir` and
// fails the test with the output when a Python test fails; it requires
// the interpreter as Require does.
func Unittest(t testing.TB, dir string) {
	t.Helper()
	py := Require(t)
	cmd := exec.Command(py, "-B", "-m", "unittest", "discover", "-s", dir, "-t", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unit tests in %s failed: %v\n%s", dir, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("%s: %s", dir, strings.Join(lines[max(0, len(lines)-3):], " "))
}

// SDKDir is the absolute path of sdk/python, the directory to put on a
// plugin's PYTHONPATH.
func SDKDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// External is the plugin file at path pinned to its current SHA-256, with
// env as its environment, for a providers.Spec.
func External(t testing.TB, path string, env map[string]string) *providers.External {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return &providers.External{Path: abs, SHA256: hex.EncodeToString(sum[:]), Env: env}
}

// Env is the environment a Python plugin in this repository needs: the
// SDK on PYTHONPATH.
func Env() map[string]string { return map[string]string{"PYTHONPATH": SDKDir()} }
