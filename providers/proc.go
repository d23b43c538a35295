package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/handoffd/handoff/providers/internal/wire"
)

// Interface guards.
var _ runner.Runner = (*procRunner)(nil)

// command is the executable and arguments of p's plugin, and the checksum
// to verify before each start ("" for built-ins, which are this binary).
func (p *Provider) command() (*exec.Cmd, string) {
	var path, sum string
	var args []string
	env := map[string]string{}
	if ext := p.spec.External; ext != nil {
		path, args, sum = ext.Path, ext.Args, ext.SHA256
		for k, v := range ext.Env {
			env[k] = v
		}
	} else {
		path = p.h.opts.Executable
		if path == "" {
			path, _ = os.Executable()
		}
		args = p.h.opts.BuiltinArgs(p.spec.Kind)
	}
	cmd := &exec.Cmd{Path: path, Args: append([]string{path}, args...)}
	cmd.Env = pluginEnv(env, p.log.Enabled(context.Background(), slog.LevelDebug), p.log.Enabled(context.Background(), slog.LevelInfo))
	return cmd, sum
}

// passEnv are the host variables a plugin gets; nothing else of the host's
// environment (which may hold secrets) reaches it. GOGC and GOMEMLIMIT
// let an operator tune the plugins' garbage collector with the daemon's.
var passEnv = []string{
	"PATH", "HOME", "TZ", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"GOGC", "GOMEMLIMIT",
}

func pluginEnv(spec map[string]string, debug, info bool) []string {
	env := map[string]string{}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range spec {
		env[k] = v
	}
	switch {
	case debug:
		env[wire.EnvLogLevel] = "debug"
	case info:
		env[wire.EnvLogLevel] = "info"
	default:
		env[wire.EnvLogLevel] = "warn"
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// runnerFunc gives go-plugin a runner for cmd. go-plugin has made tmpDir
// (under Options.RuntimeDir) for the sockets of this one process and
// removes it on Kill; go-plugin's own environment (cookie, mTLS
// certificate, socket dir) comes in gen.Env.
func (h *Host) runnerFunc(name string, cmd *exec.Cmd, checksum string, out **procRunner) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, gen *exec.Cmd, tmpDir string) (runner.Runner, error) {
		cmd.Env = append(cmd.Env, gen.Env...)
		cmd.SysProcAttr = sysProcAttr()
		r := &procRunner{name: name, cmd: cmd, checksum: checksum, dir: tmpDir, spawn: h.spawn.start}
		var err error
		if r.stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		if r.stderr, err = cmd.StderrPipe(); err != nil {
			return nil, err
		}
		*out = r
		return r, nil
	}
}

// procRunner runs one plugin process for go-plugin: checksum check, spawn
// on the host's locked spawner thread (so Pdeathsig outlives the call),
// its own process group, and a kill that takes the whole group.
type procRunner struct {
	name     string
	cmd      *exec.Cmd
	checksum string
	dir      string
	spawn    func(*exec.Cmd) error
	stdout   io.ReadCloser
	stderr   io.ReadCloser

	mu      sync.Mutex
	pid     int
	reaped  bool
	waitErr error
}

// checksumError is a pinned plugin whose binary has another hash.
type checksumError struct{ path, want, got string }

func (e *checksumError) Error() string {
	return fmt.Sprintf("sha256 mismatch for %s: expected %s, actual %s; refusing to run it (if you rebuilt it on purpose, pin the new hash: sha256sum %s)", e.path, e.want, e.got, e.path)
}

// verify checks the binary against its pin with go-plugin's SecureConfig,
// right before exec, on every start.
func (r *procRunner) verify() error {
	want, err := hex.DecodeString(r.checksum)
	if err != nil {
		return fmt.Errorf("sha256 %q is not hex", r.checksum)
	}
	sc := &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}
	ok, err := sc.Check(r.cmd.Path)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	if ok {
		return nil
	}
	got := "unknown"
	if f, err := os.Open(r.cmd.Path); err == nil {
		hash := sha256.New()
		if _, err := io.Copy(hash, f); err == nil {
			got = hex.EncodeToString(hash.Sum(nil))
		}
		f.Close()
	}
	return &checksumError{path: r.cmd.Path, want: r.checksum, got: got}
}

func (r *procRunner) Start(context.Context) error {
	if r.checksum != "" {
		if err := r.verify(); err != nil {
			r.cleanup()
			return err
		}
	}
	if err := r.spawn(r.cmd); err != nil {
		r.cleanup()
		return fmt.Errorf("start %s: %w", r.cmd.Path, err)
	}
	r.mu.Lock()
	r.pid = r.cmd.Process.Pid
	r.mu.Unlock()
	return nil
}

// Wait waits for the process to exit, kills what is left of its process
// group (helpers it spawned) before reaping it, then reaps it.
func (r *procRunner) Wait(context.Context) error {
	waitExited(r.cmd.Process.Pid)
	r.killGroup()
	err := r.cmd.Wait()
	r.mu.Lock()
	r.reaped, r.waitErr = true, err
	r.mu.Unlock()
	return err
}

// Kill sends SIGKILL to the plugin's process group.
func (r *procRunner) Kill(context.Context) error {
	r.killGroup()
	if r.cmd.Process != nil {
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
	}
	return nil
}

func (r *procRunner) killGroup() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid > 0 && !r.reaped {
		killGroup(r.pid)
	}
}

// cleanup removes the socket dir (go-plugin does too on Kill, but not when
// the start failed before the process ran).
func (r *procRunner) cleanup() {
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

func (r *procRunner) exitStatus() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.reaped:
		return "not reaped yet"
	case r.waitErr == nil:
		return "exit status 0"
	}
	return r.waitErr.Error()
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }

// Name names the plugin's logger in the host: the provider name.
func (r *procRunner) Name() string { return r.name }

func (r *procRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("%s is not a working handoff plugin: it must be built for %s/%s, be executable, call sdk.Serve from main, and never write to stdout before it", r.cmd.Path, runtime.GOOS, runtime.GOARCH)
}

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// spawner starts processes from one goroutine locked to its OS thread for
// the host's whole life. Pdeathsig fires when the *thread* that forked the
// child exits, not the process: forking from an arbitrary goroutine's
// thread, which the Go runtime may retire, would SIGKILL healthy plugins.
type spawner struct {
	once sync.Once
	reqs chan spawnReq
	done chan struct{}
	shut sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	return &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	s.once.Do(func() { go s.loop() })
	req := spawnReq{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.reqs <- req:
		return <-req.err
	case <-s.done:
		return errors.New("the host is closed")
	}
}

func (s *spawner) loop() {
	// Never unlocked: when the host closes, the goroutine ends and its
	// thread with it, which is what Pdeathsig is tied to.
	runtime.LockOSThread()
	for {
		select {
		case req := <-s.reqs:
			req.err <- req.cmd.Start()
		case <-s.done:
			return
		}
	}
}

func (s *spawner) close() { s.shut.Do(func() { close(s.done) }) }
