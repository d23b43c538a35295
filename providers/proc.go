package providers

import (
	"context"
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
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/handoffd/handoff/providers/internal/wire"
)

// Interface guards.
var _ runner.Runner = (*procRunner)(nil)

// command is the executable and arguments of p's plugin. A pinned plugin
// runs from its verified private copy (see pinned), made or checked again
// here before each start; argv[0] stays the configured path, for ps.
func (p *Provider) command() (*exec.Cmd, error) {
	var path, name string
	var args []string
	env := map[string]string{}
	if ext := p.spec.External; ext != nil {
		name, args = ext.Path, ext.Args
		for k, v := range ext.Env {
			env[k] = v
		}
		var err error
		if path, err = p.h.pins.path(p.h.sockDir, ext.Path, ext.SHA256); err != nil {
			return nil, err
		}
	} else {
		path, name = p.h.opts.Executable, p.h.opts.Executable
		if path == "" {
			path = builtinPath()
			name, _ = os.Executable()
		}
		args = p.h.opts.BuiltinArgs(p.spec.Kind)
	}
	cmd := &exec.Cmd{Path: path, Args: append([]string{name}, args...)}
	cmd.Env = pluginEnv(env, p.log.Enabled(context.Background(), slog.LevelDebug), p.log.Enabled(context.Background(), slog.LevelInfo))
	return cmd, nil
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
func (h *Host) runnerFunc(name string, cmd *exec.Cmd, out **procRunner) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, gen *exec.Cmd, tmpDir string) (runner.Runner, error) {
		cmd.Env = append(cmd.Env, gen.Env...)
		cmd.SysProcAttr = sysProcAttr()
		r := &procRunner{name: name, cmd: cmd, dir: tmpDir, spawn: h.spawn.start}
		var err error
		if r.stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		r.stderr = guardLogLines(stderr)
		*out = r
		return r, nil
	}
}

// procRunner runs one plugin process for go-plugin: spawn on the host's
// locked spawner thread (so Pdeathsig outlives the call), its own process
// group, and a kill that takes the whole group.
type procRunner struct {
	name   string
	cmd    *exec.Cmd
	dir    string
	spawn  func(*exec.Cmd) error
	stdout io.ReadCloser
	stderr io.ReadCloser

	mu      sync.Mutex
	pid     int
	reaped  bool
	waitErr error
}

// textBusyTries bounds the starts retried after ETXTBSY.
const textBusyTries = 20

func (r *procRunner) Start(context.Context) error {
	err := r.spawn(r.cmd)
	for i := 1; i < textBusyTries && textBusy(err); i++ {
		time.Sleep(time.Duration(i) * 5 * time.Millisecond)
		err = r.spawn(r.cmd)
	}
	if err != nil {
		r.cleanup()
		return fmt.Errorf("start %s: %w", r.cmd.Args[0], err)
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
	return fmt.Sprintf("%s is not a working handoff plugin: it must be built for %s/%s, be executable, call sdk.Serve from main, and never write to stdout before it", r.cmd.Args[0], runtime.GOOS, runtime.GOARCH)
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
