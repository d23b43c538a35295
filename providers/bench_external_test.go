package providers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// The benchmarks of an external plugin written in Node.js (the SDK in
// sdk/node), next to bench_test.go's Go ones:
//
//	npm ci --prefix examples/plugin-node
//	go test ./providers -run x -bench External -count 3

// nodeEcho is the Node.js echo test plugin, pinned, run as the host runs
// any third-party plugin: from its verified copy, with NODE_PATH naming
// the packages examples/plugin-node installed (the SDK among them). Under
// CI=true a missing node or node_modules fails the test; elsewhere it
// skips it.
func nodeEcho(t testing.TB, name string) Spec {
	t.Helper()
	modules, err := filepath.Abs(filepath.Join("..", "examples", "plugin-node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	_, errNode := exec.LookPath("node")
	_, errMods := os.Stat(filepath.Join(modules, "handoff-plugin-sdk", "index.js"))
	if missing := errors.Join(errNode, errMods); missing != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and examples/plugin-node/node_modules are needed (npm ci --prefix examples/plugin-node): %v", missing)
		}
		t.Skipf("node or examples/plugin-node/node_modules missing (npm ci --prefix examples/plugin-node): %v", missing)
	}
	path := filepath.Join("internal", "testplugins", "echonode", "echo.mjs")
	return Spec{Name: name, External: &External{Path: path, SHA256: sha256File(t, path), Env: map[string]string{"NODE_PATH": modules}}}
}

// TestNodePlugin runs the Node.js echo through the real host: handshake
// with AutoMTLS, Describe and Configure, a Verify with the request facts,
// the host KV over the broker (put, get, the atomic add and
// put-if-absent), coded errors both ways, a bug reported as a panic, the
// deadline crossing, the plugin's log lines and stdout in the host's log,
// and a restart after kill -9.
func TestNodePlugin(t *testing.T) {
	logs := &lockedBuffer{}
	h, err := newHost(t, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, nodeEcho(t, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "echo")
	st := p.status()
	if st.Health != HealthUp || !st.ProvesIdentity || len(st.Flows) != 1 || st.Flows[0] != sdk.FlowDirect {
		t.Fatalf("status %+v", st)
	}
	id, err := verify(p, map[string]any{"op": "ok", "subject": "alice"})
	if err != nil || id.Subject != "alice" || id.Claims["request_id"] != "req-1" || id.Claims["client_ip"] != "192.0.2.1" {
		t.Fatalf("verify: %+v, %v", id, err)
	}
	if _, err := verify(p, map[string]any{"op": "kvput", "key": "k", "value": "v1"}); err != nil {
		t.Fatal(err)
	}
	if id, err := verify(p, map[string]any{"op": "kvget", "key": "k"}); err != nil || id.Claims["value"] != "v1" {
		t.Fatalf("kvget: %+v, %v", id.Claims, err)
	}
	for want := 1; want <= 2; want++ {
		if id, err := verify(p, map[string]any{"op": "kvadd", "key": "n"}); err != nil || id.Claims["value"] != float64(want) {
			t.Fatalf("kvadd %d: %+v, %v", want, id.Claims, err)
		}
	}
	for i, want := range []bool{true, false} {
		if id, err := verify(p, map[string]any{"op": "kvonce", "key": "once"}); err != nil || id.Claims["value"] != want {
			t.Fatalf("kvonce %d: %+v, %v", i, id.Claims, err)
		}
	}
	if _, err := verify(p, map[string]any{"op": "kvget", "key": "absent"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("kvget of an absent key: %v, want ErrNotFound from the host, through the plugin", err)
	}
	for code, sentinel := range map[int]error{1: sdk.ErrInvalidCredentials, 2: sdk.ErrInvalidRequest, 3: sdk.ErrUnavailable, 6: sdk.ErrMisconfigured} {
		_, err := verify(p, map[string]any{"op": "error", "code": code, "message": "nope"})
		var e *sdk.Error
		if !errors.Is(err, sentinel) || !errors.As(err, &e) || e.Message != "nope" {
			t.Errorf("code %d: %v, want %v with the message", code, err, sentinel)
		}
	}
	if _, err := verify(p, map[string]any{"op": "bug"}); !errors.Is(err, sdk.ErrInternal) {
		t.Errorf("a TypeError: %v, want ErrInternal", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	id, err = p.Verify(ctx, sdk.Request{Payload: payload(map[string]any{"op": "deadline"})})
	if left, _ := id.Claims["deadline_ms"].(float64); err != nil || left <= 0 || left > 3000 {
		t.Errorf("the deadline the plugin saw: %v ms (%v), want the caller's 3 s", id.Claims["deadline_ms"], err)
	}
	for _, op := range []string{"log", "stdout"} {
		if _, err := verify(p, map[string]any{"op": op, "message": "hello from node"}); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	waitFor(t, 5*time.Second, "the plugin's log line and stdout in the host's log", func() bool {
		var logged, printed bool
		for _, l := range strings.Split(logs.String(), "\n") {
			logged = logged || strings.Contains(l, `level=WARN msg="hello from node"`) && strings.Contains(l, "provider=echo") && strings.Contains(l, "who=echo-node") && strings.Contains(l, "request_id=req-1")
			printed = printed || strings.Contains(l, "plugin wrote to stdout") && strings.Contains(l, "stdout from a node plugin")
		}
		return logged && printed
	})

	pid := p.status().PID
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "a restarted node plugin", func() bool {
		id, err := verify(p, map[string]any{"op": "ok"})
		return err == nil && int(id.Claims["pid"].(float64)) != pid
	})
	pid = p.status().PID
	h.Close()
	waitFor(t, 3*time.Second, "the node plugin to exit after Close", func() bool { return pidGone(pid) })
}

// lockedBuffer is a log destination the host's goroutines share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BenchmarkExternalStart measures an external Node.js plugin's spawn →
// handshake (AutoMTLS) → Describe → Configure → first Verify, as
// BenchmarkStart does for Go plugins (with its sha256 pin checked).
func BenchmarkExternalStart(b *testing.B) { benchStart(b, nodeEcho(b, "echo")) }

// BenchmarkExternalVerify measures one Verify round trip through the
// Node.js plugin (AutoMTLS on), with and without a host KV call inside,
// and reports p50 and p99, as BenchmarkVerify does for Go; the longer
// warm-up lets V8 compile the hot path.
func BenchmarkExternalVerify(b *testing.B) { benchVerify(b, nodeEcho(b, "echo"), 500) }

// BenchmarkExternalRestart measures kill -9 of the Node.js plugin → the
// first successful Verify on its replacement, as BenchmarkRestart does
// for Go plugins (-bench Restart runs both).
func BenchmarkExternalRestart(b *testing.B) { benchRestart(b, nodeEcho(b, "echo")) }
