package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/internal/testverifier"
	"github.com/handoffd/handoff/providers/sdk"
)

// builtins are the kinds this test binary serves when re-executed as
// `<test binary> plugin <kind>`, exactly as handoff's main does.
var builtins = map[string]sdk.Factory{
	"echo":    testverifier.New,
	"minimal": testverifier.NewMinimal,
}

// bin holds the test plugins built by TestMain: bin/echo, bin/minimal,
// bin/noisy, and bin/plugin (examples/plugin, the TOTP example).
var bin string

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "plugin" {
		sdk.Serve(builtins[os.Args[2]])
		// Exit at once: a -race binary otherwise sleeps 1 s at exit
		// (GORACE atexit_sleep_ms), which only slows the tests' Close.
		syscall.Exit(0)
	}
	if os.Getenv(envBuiltinHelper) != "" {
		builtinHelper()
		return
	}
	if os.Getenv(envHostHelper) != "" {
		hostHelper()
		return
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "handoff-testplugins")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/handoffd/handoff/providers/internal/testplugins/...",
		"github.com/handoffd/handoff/examples/plugin") // bin/plugin: the TOTP example
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test plugins:", err)
		return 1
	}
	bin = dir
	return m.Run()
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// external is a spec for a test plugin binary, pinned.
func external(t testing.TB, name, plugin string) Spec {
	path := filepath.Join(bin, plugin)
	return Spec{Name: name, External: &External{Path: path, SHA256: sha256File(t, path)}}
}

// runtimeDir is a short per-test runtime dir (unix socket paths are short).
func runtimeDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "hrt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// socketDirs lists the per-process socket dirs in a host's dir (not the
// bin dir of verified plugin copies).
func socketDirs(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "plugin-dir") {
			out = append(out, e.Name())
		}
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newHost starts a host for a test with fast supervision timings.
func newHost(t testing.TB, opts Options, specs ...Spec) (*Host, error) {
	t.Helper()
	return newHostTuned(t, opts, nil, specs...)
}

// newHostTuned is newHost with a hook to change the timings before Start.
func newHostTuned(t testing.TB, opts Options, tune func(*tuning), specs ...Spec) (*Host, error) {
	t.Helper()
	if opts.Builtins == nil {
		opts.Builtins = builtins
	}
	if opts.RuntimeDir == "" {
		opts.RuntimeDir = runtimeDir(t)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	h := New(opts)
	h.tune.pingEvery = 100 * time.Millisecond
	h.tune.pingTimeout = 500 * time.Millisecond
	h.tune.backoffBase = 50 * time.Millisecond
	h.tune.backoffMax = 500 * time.Millisecond
	if tune != nil {
		tune(&h.tune)
	}
	t.Cleanup(func() { h.Close() })
	err := h.Start(context.Background(), specs)
	return h, err
}

func payload(v any) json.RawMessage {
	raw, _ := json.Marshal(v)
	return raw
}

func verify(p *Provider, v any) (sdk.Identity, error) {
	return p.Verify(context.Background(), sdk.Request{Payload: payload(v), RequestID: "req-1", ClientIP: "192.0.2.1"})
}

func mustProvider(t testing.TB, h *Host, name string) *Provider {
	t.Helper()
	p, ok := h.Provider(name)
	if !ok {
		t.Fatalf("provider %q not started: %+v", name, h.Status())
	}
	return p
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pidGone(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// state is the field after the ")" closing the command name; Z is a
	// zombie, X dead.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}
