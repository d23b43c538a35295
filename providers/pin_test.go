package providers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runningSum is the SHA-256 of the bytes process pid executes.
func runningSum(t testing.TB, pid int) string {
	t.Helper()
	return sha256File(t, fmt.Sprintf("/proc/%d/exe", pid))
}

// copyBin copies the test plugin name to path (mode 0755).
func copyBin(t testing.TB, name, path string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bin, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// swapIn replaces the file at path by the test plugin name the way an
// attacker who can write the plugin's directory would: a new file renamed
// over it (inPlace false), or the same file truncated and rewritten.
func swapIn(t testing.TB, name, path string, inPlace bool) {
	t.Helper()
	if inPlace {
		copyBin(t, name, path)
		return
	}
	copyBin(t, name, path+".new")
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// restarted kills p's process and waits until its restart n is up,
// returning the new pid.
func restarted(t testing.TB, p *Provider, n int) int {
	t.Helper()
	_ = syscall.Kill(p.status().PID, syscall.SIGKILL)
	waitFor(t, 15*time.Second, fmt.Sprintf("restart %d", n), func() bool {
		st := p.status()
		return st.Restarts == n && st.Health == HealthUp
	})
	return p.status().PID
}

// TestPinnedRestartRunsTheVerifiedBytes is the attack on the pin at a
// restart: the plugin pinned to binary A runs; its file is replaced by B
// (renamed over it, or rewritten in place) and the plugin is killed. The
// restarted process must run A's bytes, never B's: the daemon runs its
// verified copy, not the path.
func TestPinnedRestartRunsTheVerifiedBytes(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		t.Run(map[bool]string{false: "renamed over", true: "rewritten in place"}[inPlace], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin")
			copyBin(t, "echo", path)
			want := sha256File(t, path)
			h, err := newHost(t, Options{}, Spec{Name: "p", External: &External{Path: path, SHA256: want}})
			if err != nil {
				t.Fatal(err)
			}
			p := mustProvider(t, h, "p")
			if got := runningSum(t, p.status().PID); got != want {
				t.Fatalf("first start runs %s, want %s", got, want)
			}
			swapIn(t, "minimal", path, inPlace)
			if sha256File(t, path) == want {
				t.Fatal("the swap did not change the file")
			}
			for i := 1; i <= 2; i++ {
				pid := restarted(t, p, i)
				if got := runningSum(t, pid); got != want {
					t.Fatalf("restart %d runs %s (the swapped-in binary), want the pinned %s", i, got, want)
				}
				if caps := p.Info().Capabilities; len(caps) == 0 {
					t.Fatalf("restart %d: capabilities %v: the minimal plugin runs, not echo", i, caps)
				}
				if _, err := verify(p, map[string]any{"op": "ok"}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestPinnedSwapRace swaps binary A and B at the pinned path as fast as it
// can while the plugin is restarted again and again, and while fresh hosts
// start it: every process that runs must run A's bytes; a start may be
// refused (it read B), never run B. With the path hashed and then executed
// again, about one start in four ran B here.
func TestPinnedSwapRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plugin")
	copyBin(t, "echo", path)
	copyBin(t, "echo", filepath.Join(dir, "a"))
	copyBin(t, "minimal", filepath.Join(dir, "b"))
	want := sha256File(t, path)
	spec := Spec{Name: "p", External: &External{Path: path, SHA256: want}}
	h, err := newHost(t, Options{}, spec)
	if err != nil {
		t.Fatal(err)
	}
	p := mustProvider(t, h, "p")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src := filepath.Join(dir, "a")
			if i%2 == 1 {
				src = filepath.Join(dir, "b")
			}
			tmp := filepath.Join(dir, fmt.Sprintf("t%d", i%2))
			_ = os.Remove(tmp)
			if err := os.Link(src, tmp); err == nil {
				_ = os.Rename(tmp, path)
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	for i := 1; i <= 8; i++ {
		pid := restarted(t, p, i)
		if got := runningSum(t, pid); got != want {
			t.Fatalf("restart %d under swapping runs %s, want the pinned %s", i, got, want)
		}
	}
	refused := 0
	for i := range 8 {
		h2, err := newHost(t, Options{}, spec)
		if err != nil {
			if !strings.Contains(err.Error(), "sha256 mismatch") {
				t.Fatalf("start %d: %v", i, err)
			}
			refused++
			h2.Close()
			continue
		}
		if got := runningSum(t, mustProvider(t, h2, "p").status().PID); got != want {
			t.Fatalf("fresh start %d under swapping runs %s, want the pinned %s", i, got, want)
		}
		h2.Close()
	}
	t.Logf("fresh starts under swapping: %d of 8 refused (they read B), the rest ran A", refused)
}

// envBuiltinHelper makes the test binary a host (builtinHelper) that
// re-executes itself for a built-in without Options.Executable, as handoff
// serve does; its value is the runtime dir.
const envBuiltinHelper = "HANDOFF_PROVIDERS_TEST_BUILTIN_HOST"

// builtinHelper starts the echo built-in and prints {"pid", "restarts"}
// each time they change.
func builtinHelper() {
	h := New(Options{Builtins: builtins, RuntimeDir: os.Getenv(envBuiltinHelper)})
	h.tune.backoffBase = 50 * time.Millisecond
	if err := h.Start(context.Background(), []Spec{{Name: "builtin", Kind: "echo"}}); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	last := Status{}
	for {
		st := h.Status()[0]
		if st.PID != 0 && (st.PID != last.PID || st.Restarts != last.Restarts) {
			_ = json.NewEncoder(os.Stdout).Encode(map[string]int{"pid": st.PID, "restarts": st.Restarts})
			last = st
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBuiltinRestartRunsTheDaemonsBytes: handoff's binary is replaced
// on disk (an upgrade, or an attacker) while it runs, and a built-in
// plugin crashes. Its restart must run the daemon's own bytes (the running
// executable, /proc/self/exe), not whatever the path holds now.
func TestBuiltinRestartRunsTheDaemonsBytes(t *testing.T) {
	dir := t.TempDir()
	daemon := filepath.Join(dir, "handoff")
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemon, self, 0o755); err != nil {
		t.Fatal(err)
	}
	want := sha256File(t, daemon)
	cmd := exec.Command(daemon)
	cmd.Env = append(os.Environ(), envBuiltinHelper+"="+runtimeDir(t))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	next := func() map[string]int {
		t.Helper()
		got := make(chan map[string]int, 1)
		go func() {
			var m map[string]int
			if lines.Scan() {
				_ = json.Unmarshal(lines.Bytes(), &m)
			}
			got <- m
		}()
		select {
		case m := <-got:
			if m == nil {
				t.Fatal("the helper host ended")
			}
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("the helper host said nothing")
		}
		return nil
	}
	first := next()
	if got := runningSum(t, first["pid"]); got != want {
		t.Fatalf("the built-in runs %s, want the daemon's %s", got, want)
	}
	copyBin(t, "minimal", daemon+".new")
	if err := os.Rename(daemon+".new", daemon); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(first["pid"], syscall.SIGKILL)
	for {
		m := next()
		if m["restarts"] < 1 {
			continue
		}
		if got := runningSum(t, m["pid"]); got != want {
			t.Fatalf("the restarted built-in runs %s (what the path holds now), want the daemon's %s", got, want)
		}
		return
	}
}

// TestPinnedRefusesASharedRuntimeDir: where others may write, they could
// put a directory or file where the verified copy is looked for; a pinned
// plugin does not start there.
func TestPinnedRefusesASharedRuntimeDir(t *testing.T) {
	rt := runtimeDir(t)
	if err := os.Chmod(rt, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := newHost(t, Options{RuntimeDir: rt}, external(t, "p", "echo"))
	if err == nil || !strings.Contains(err.Error(), "others cannot write") {
		t.Fatalf("start in a world-writable runtime dir: %v", err)
	}
}

func TestCopyName(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"./bin/totp", "abc"},
		{"plugins/totp.mjs", "abc.mjs"},
		{"totp.py", "abc.py"},
		{"/opt/v1.2/totp", "abc"},
		{"x.", "abc"},
		{"x.m js", "abc"},
		{"x.$(id)", "abc"},
		{"x.0123456789abcdefg", "abc"},
	} {
		t.Run(c.src, func(t *testing.T) {
			if got := copyName(c.src, "abc"); got != c.want {
				t.Errorf("copyName(%q) = %q, want %q", c.src, got, c.want)
			}
		})
	}
}
