package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/handoffd/handoff/providers/sdk"
)

// binDir holds the handoff binary built for the tests that need real
// plugin processes (flow, --startup, the plugin benchmarks).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "handoff-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// handoffBinary builds the handoff binary once (go build of the repo
// root) and returns its path. The bench hands it to the daemon as
// Options.Executable, so plugins run out of process as in production.
func handoffBinary(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(binDir, "handoff")
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", path, "../..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build handoff: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return path
}

// testBuiltins names the kinds the built binary serves; the factories
// stay in that binary (this package imports no plugin).
var testBuiltins = map[string]sdk.Factory{"password": nil}
