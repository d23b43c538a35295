package providertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers"
)

// CommandSuite describes an external plugin command for RunCommand.
type CommandSuite struct {
	// Command is the plugin's argv: {"/path/to/binary"}, or a runtime and
	// its entry file, {"node", "totp.mjs"}. Command[0] is looked up in PATH
	// when it has no slash; the other arguments are passed as they are,
	// and a relative path in them is relative to the test's working
	// directory (its package directory).
	Command []string
	// Env is the plugin's environment beyond what the host passes
	// (PATH, HOME, ...), as "KEY=value" strings.
	Env []string
	// Config and Valid are Suite's.
	Config any
	Valid  func(t *testing.T, c Conn) json.RawMessage
}

// stopWithin is how long a plugin may take to exit once the host asks it
// to shut down; go-plugin kills it after 2 s.
const stopWithin = 2 * time.Second

// RunCommand runs the conformance suite (see Run) against an external
// plugin command, started for each connection through the host handoff
// runs (package providers): the same handshake config, AutoMTLS, the
// plugin's environment, a pinned private copy of Command[0] (pinned here
// to its current SHA-256), and the host KV served over go-plugin's
// broker. It is how a plugin written in any language proves it speaks the
// protocol (docs/plugin-protocol.md).
//
// Besides Run's checks, each process must exit by itself within 2 s of
// the host's Shutdown, with status 0. When a test fails, the host's log
// of the process (its stderr, re-logged) is in the test's output.
func RunCommand(t *testing.T, s CommandSuite) {
	t.Helper()
	ext := commandExternal(t, s)
	logs := &logBuffer{}
	h := newHost(t, providers.Options{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	connect := func(t *testing.T) Conn { return spawnCommand(t, h, ext, logs) }
	ok := t.Run("Shutdown", func(t *testing.T) {
		c := connect(t)
		if err := c.Configure(ctxT(t), RawConfig(t, s.Config)); err != nil {
			t.Fatalf("Configure: %v", err)
		}
		// connect's cleanup stops the process and checks how it went.
	})
	if !ok {
		t.Fatal("providertest: the plugin did not start, configure and stop cleanly once; the rest of the suite is not run")
	}
	run(t, Suite{Config: s.Config, Valid: s.Valid}, connect)
}

// newHost returns a host with a runtime dir of its own (short, for unix
// socket paths), closed and removed when t ends, so that tests running
// plugin commands may run in parallel.
func newHost(t testing.TB, opts providers.Options) *providers.Host {
	t.Helper()
	dir, err := os.MkdirTemp("", "hpt")
	if err != nil {
		t.Fatal(err)
	}
	opts.RuntimeDir = dir
	h := providers.New(opts)
	t.Cleanup(func() {
		_ = h.Close()
		_ = os.RemoveAll(dir)
	})
	return h
}

// commandExternal turns the suite's command into the host's External: the
// executable resolved and pinned to its hash now.
func commandExternal(t testing.TB, s CommandSuite) *providers.External {
	t.Helper()
	if len(s.Command) == 0 {
		t.Fatal("providertest: CommandSuite.Command is empty")
	}
	path := s.Command[0]
	var err error
	if strings.ContainsRune(path, filepath.Separator) {
		path, err = filepath.Abs(path)
	} else {
		path, err = exec.LookPath(path)
	}
	if err != nil {
		t.Fatalf("providertest: plugin command %q: %v", s.Command[0], err)
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("providertest: plugin command: %v", err)
	}
	sum := sha256.Sum256(bin)
	env := map[string]string{}
	for _, kv := range s.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("providertest: Env entry %q is not KEY=value", kv)
		}
		env[k] = v
	}
	return &providers.External{Path: path, SHA256: hex.EncodeToString(sum[:]), Args: s.Command[1:], Env: env}
}

// spawnCommand starts one plugin process and returns its Conn. When the
// test ends the process is stopped, and must exit cleanly and promptly.
func spawnCommand(t *testing.T, h *providers.Host, ext *providers.External, logs *logBuffer) Conn {
	t.Helper()
	mark := logs.Len()
	dump := func() { t.Logf("host log since the plugin was started:\n%s", logs.Since(mark)) }
	proc, err := h.Spawn(providers.Spec{Name: "conformance", External: ext})
	if err != nil {
		dump()
		t.Fatalf("providertest: start %s: %v", ext.Path, err)
	}
	t.Cleanup(func() {
		exit, took := proc.Stop()
		switch {
		case took > stopWithin || exit != "exit status 0":
			t.Errorf("after the host's Shutdown the plugin (pid %d) took %s to exit, with %s; want a clean exit (status 0) within %s", proc.PID(), took.Round(time.Millisecond), exit, stopWithin)
			dump()
		case t.Failed():
			dump()
		}
	})
	return &Client{rpc: proc.RPC(), kv: NewKV()}
}

// logBuffer is the host's log, kept for the report of a failed test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Len is the log's length so far, a mark for Since.
func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Since returns what was logged after mark.
func (b *logBuffer) Since(mark int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf.Bytes()[mark:])
}
