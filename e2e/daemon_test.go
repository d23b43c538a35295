package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the handoff binary built once for the package's tests.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func handoffBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "handoff-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "handoff")
		out, err := exec.Command("go", "build", "-o", binPath, "..").CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build handoff: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// daemon is a running handoff process.
type daemon struct {
	URL  string // http://127.0.0.1:port
	Key  string // the API key printed at first start
	Data string
	cmd  *exec.Cmd
	logs *logBuffer
}

var (
	addrRE = regexp.MustCompile(`msg="handoff serving" addr=(\S+)`)
	keyRE  = regexp.MustCompile(`^\s+(standard_[0-9a-f]+)\s*$`)
)

// startDaemon starts handoff with config YAML cfg (may be "") on a fresh
// data dir, waits until it is ready, and stops it when the test ends.
func startDaemon(t *testing.T, cfg string, env ...string) *daemon {
	t.Helper()
	data := t.TempDir()
	return startDaemonIn(t, data, cfg, env...)
}

func startDaemonIn(t *testing.T, data, cfg string, env ...string) *daemon {
	t.Helper()
	bin := handoffBinary(t)
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data", data}
	if cfg != "" {
		path := filepath.Join(t.TempDir(), "handoff.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{Data: data, cmd: cmd, logs: &logBuffer{}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			d.logs.add(line)
			if m := keyRE.FindStringSubmatch(line); m != nil {
				d.Key = m[1]
			}
			if m := addrRE.FindStringSubmatch(line); m != nil && !signalled {
				d.URL = "http://" + m[1]
				signalled = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs.String())
		}
	})
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("handoff did not start; log:\n%s", d.logs.String())
	}
	waitReady(t, d.URL)
	return d
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	if d.cmd.Process == nil || d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("handoff exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Errorf("handoff did not stop within 15s of SIGINT")
	}
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(l string) {
	b.mu.Lock()
	b.lines = append(b.lines, l)
	b.mu.Unlock()
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// requireTool skips (or, under CI=true, fails) when a tool is missing.
func requireTool(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true", what)
	}
	t.Skipf("%s is missing (CI=true makes this a failure)", what)
}

var _ = context.Background
