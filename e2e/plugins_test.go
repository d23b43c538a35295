package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildPlugin builds the main package at pkg (relative to e2e/) and
// returns its path and sha256.
func buildPlugin(t *testing.T, pkg string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(raw)
	return path, hex.EncodeToString(h[:])
}

// children lists the live (not zombie) processes whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state, ok := procStat(child); ok && ppid == pid && state != "Z" {
			out = append(out, child)
		}
	}
	return out
}

// procStat reads a process's parent and state from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(raw)
	rest := s[strings.LastIndexByte(s, ')')+2:] // after "pid (comm) "
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], true
}

// alive reports whether pid is a live, non-zombie process.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// TestNoPluginOutlivesAKilledDaemon SIGKILLs the daemon, which gets no
// chance to clean up, and checks its plugin processes exit on their own
// (Pdeathsig, and the SDK's parent watchdog as the backstop).
func TestNoPluginOutlivesAKilledDaemon(t *testing.T) {
	echo, sum := buildPlugin(t, "../providers/internal/testplugins/echo")
	cfg := fmt.Sprintf(`
providers:
  - name: one
    plugin: {path: %q, sha256: %q}
  - name: two
    plugin: {path: %q, sha256: %q}
  - name: three
    kind: password
    config: {insecure_fast: true, argon2: {memory: 64, time: 1, threads: 1}}
`, echo, sum, echo, sum)
	d := startDaemon(t, cfg)
	var plugins []int
	deadline := time.Now().Add(5 * time.Second)
	for len(plugins) < 3 && time.Now().Before(deadline) {
		plugins = children(d.cmd.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	if len(plugins) < 2 {
		t.Fatalf("want the plugin processes as the daemon's children, found %v\n%s", plugins, d.logs.String())
	}
	killDaemonWantPluginsGone(t, d, plugins)
}

// killDaemonWantPluginsGone SIGKILLs the daemon and wants every one of
// its plugin processes gone within 5 s.
func killDaemonWantPluginsGone(t *testing.T, d *daemon, plugins []int) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []int
		for _, pid := range plugins {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("plugin processes %v outlived the killed daemon", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
