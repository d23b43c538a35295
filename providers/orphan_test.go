package providers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// envHostHelper makes the test binary a host process (hostHelper) for the
// SIGKILL test; its value is the runtime dir.
const envHostHelper = "HANDOFF_PROVIDERS_TEST_HOST"

// hostHelper starts a built-in and an external plugin, prints their pids
// as one JSON line and waits to be killed.
func hostHelper() {
	exe, _ := os.Executable()
	h := New(Options{Builtins: builtins, Executable: exe, RuntimeDir: os.Getenv(envHostHelper)})
	path := os.Getenv("HANDOFF_PROVIDERS_TEST_PLUGIN")
	sum := ""
	if raw, err := os.ReadFile(path + ".sha256"); err == nil {
		sum = string(raw)
	}
	err := h.Start(context.Background(), []Spec{
		{Name: "builtin", Kind: "echo"},
		{Name: "external", External: &External{Path: path, SHA256: sum}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	pids := map[string]int{}
	for _, st := range h.Status() {
		pids[st.Name] = st.PID
	}
	_ = json.NewEncoder(os.Stdout).Encode(pids)
	select {}
}

// TestHostSIGKILLLeavesNoPlugins runs a host as a child process, SIGKILLs
// it, and checks that its plugins die within 2 s (Pdeathsig, with the
// SDK's parent watchdog as backstop) and that the next host sweeps the
// socket dir the dead one left.
func TestHostSIGKILLLeavesNoPlugins(t *testing.T) {
	// Orphans are re-parented to us instead of init, so we can reap them
	// and tell a dead process from a live one.
	if err := setSubreaper(); err != nil {
		t.Logf("no subreaper (%v); relying on init to reap", err)
	}
	rt := runtimeDir(t)
	plugin := filepath.Join(bin, "echo")
	if err := os.WriteFile(plugin+".sha256", []byte(sha256File(t, plugin)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envHostHelper+"="+rt, "HANDOFF_PROVIDERS_TEST_PLUGIN="+plugin)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var pids map[string]int
	if err := json.Unmarshal(line, &pids); err != nil || pids["builtin"] == 0 || pids["external"] == 0 {
		t.Fatalf("helper said %q", line)
	}
	for name, pid := range pids {
		if pidGone(pid) {
			t.Fatalf("%s plugin (pid %d) is not running before the kill", name, pid)
		}
	}
	stale := filepath.Join(rt, "h"+strconv.Itoa(cmd.Process.Pid))
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("helper's socket dir: %v", err)
	}

	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for name, pid := range pids {
		waitFor(t, 2*time.Second, fmt.Sprintf("%s plugin (pid %d) to die", name, pid), func() bool {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			return pidGone(pid)
		})
	}
	t.Logf("plugins gone %s after the host's SIGKILL", time.Since(killed).Round(time.Millisecond))

	// The dead host could not clean up its socket dir; the next one does.
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("expected the dead host's socket dir to remain until the next start: %v", err)
	}
	if _, err := newHost(t, Options{RuntimeDir: rt}, Spec{Name: "echo", Kind: "echo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale socket dir %s not swept: %v", stale, err)
	}
}

func setSubreaper() error {
	const prSetChildSubreaper = 36
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
