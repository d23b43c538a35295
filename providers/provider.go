package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/handoffd/handoff/providers/internal/hostrpc"
	"github.com/handoffd/handoff/providers/internal/wire"
	"github.com/handoffd/handoff/providers/sdk"
)

// Provider is one configured provider: its plugin process, supervised by
// the host. Its methods are safe for concurrent use. Each call runs under
// the provider's deadline (Spec.Timeout); while the plugin is down every
// call fails at once with an error matching sdk.ErrUnavailable, and a call
// that runs out of time does too.
type Provider struct {
	h      *Host
	spec   Spec
	log    *slog.Logger
	kv     KV
	swapMu sync.Mutex // CompareAndSwap on a KV without Update

	refused bool // checkSpec refused the spec; set before Start returns

	// ctx ends when the provider is stopped: by Close, or by Swap taking it
	// out. done is closed when its supervisor has returned (or, for a
	// provider never supervised, when it is stopped).
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	inflight atomic.Int64 // calls under way, drained before a Swap stops it
	staged   *instance    // Stage's instance, handed to the supervisor by Swap

	mu       sync.Mutex
	health   Health
	inst     *instance // set while up
	info     sdk.Info
	lastErr  string
	callErr  *callError // the last call refused as misconfigured
	restarts int
	attempts int  // starts tried since the provider was last up
	wasUp    bool // it has been up once: the next up is a restart
}

// instance is one plugin process.
type instance struct {
	client  *plugin.Client
	runner  *procRunner
	rpc     *hostrpc.Client
	info    sdk.Info
	started time.Time

	timeouts  atomic.Int32  // calls in a row that ran past the provider's timeout
	answered  atomic.Int64  // unix nanoseconds of the last call answered in time (or of the start)
	stuck     chan struct{} // closed at tuning.stuckCalls timeouts in a row with no answer in between
	stuckOnce sync.Once
}

func newProvider(h *Host, spec Spec) *Provider {
	ctx, cancel := context.WithCancel(h.ctx)
	return &Provider{
		h: h, spec: spec, log: h.log.With("provider", spec.Name), kv: h.opts.KV(spec.Name), health: HealthStarting, attempts: 1,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.spec.Name }

// Info returns what the plugin reported in Describe, with its
// capabilities.
func (p *Provider) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

func (p *Provider) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{
		Name: p.spec.Name, Kind: p.spec.Kind, Flows: p.info.Flows, Capabilities: p.info.Capabilities,
		ProvesIdentity: p.info.ProvesIdentity, Optional: p.spec.Optional, Health: p.health, LastError: p.lastErr,
		Restarts: p.restarts, Attempts: p.attempts,
	}
	if p.callErr != nil {
		st.LastCallError, st.LastCallErrorAt = p.callErr.message, p.callErr.at
	}
	if p.inst != nil {
		st.PID = p.inst.runner.pid
	}
	return st
}

// setRefused marks a spec the host will never start.
func (p *Provider) setRefused(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.lastErr, p.inst, p.attempts = HealthDown, err.Error(), nil, 0
}

// setStartFailed records a failed first start, to be retried.
func (p *Provider) setStartFailed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.lastErr, p.inst = HealthRestarting, err.Error(), nil
}

func (p *Provider) setUp(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.inst, p.info, p.attempts = HealthUp, inst, inst.info, 0
	if p.wasUp {
		p.restarts++
	}
	p.wasUp = true
}

// setRestarting records why a running plugin went down.
func (p *Provider) setRestarting(why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.inst, p.lastErr = HealthRestarting, nil, why.Error()
}

// setAttempt records that start attempt n of this outage is under way.
func (p *Provider) setAttempt(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts = n
}

// setStopped marks the provider down for good: the host is closing, or a
// reload took the provider out.
func (p *Provider) setStopped() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health, p.inst = HealthDown, nil
}

func (p *Provider) setLastErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastErr = err.Error()
}

// callError is a call the plugin failed with sdk.ErrMisconfigured.
type callError struct {
	method, message string
	at              time.Time
}

// noteCall keeps the last call the plugin failed with sdk.ErrMisconfigured
// (a service it depends on refused its own config: an IdP refusing the
// client credentials) for the operator's view of the provider. The same
// method succeeding later clears it: the config works again. A call
// failing otherwise (the user's wrong password, a timeout) leaves it.
func (p *Provider) noteCall(method string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case errors.Is(err, sdk.ErrMisconfigured):
		p.callErr = &callError{method: method, message: err.Error(), at: time.Now()}
	case err == nil && p.callErr != nil && p.callErr.method == method:
		p.callErr = nil
	}
}

// launch starts a plugin process and configures it: spawn, handshake,
// Describe, Configure with the spec's config and the provider's KV.
func (p *Provider) launch(ctx context.Context) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, p.h.tune.startTimeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	inst, err := p.spawn()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.kill(inst, false)
		}
	}()
	info, err := inst.rpc.Describe(ctx)
	if err != nil {
		return nil, p.binaryError(fmt.Errorf("describe: %w", err))
	}
	for _, f := range info.Flows {
		if f != sdk.FlowDirect && f != sdk.FlowRedirect {
			p.log.Warn("plugin reports an unknown flow", "flow", f)
		}
	}
	if slices.Contains(info.Flows, sdk.FlowRedirect) && !slices.Contains(info.Capabilities, sdk.CapRedirector) {
		return nil, p.binaryError(errors.New("describe: the plugin reports the redirect flow but does not implement sdk.Redirector"))
	}
	inst.info = info
	if err := inst.rpc.Configure(ctx, p.spec.Config, p.kv, &p.swapMu); err != nil {
		return nil, keyError("config", fmt.Errorf("configure: %w", err))
	}
	inst.started = time.Now()
	inst.answered.Store(inst.started.UnixNano())
	ok = true
	return inst, nil
}

// binaryError blames a plugin that misbehaves on its binary: a third-party
// one's plugin.path; a built-in's is this daemon, no key of the config.
func (p *Provider) binaryError(err error) error {
	if p.spec.External == nil {
		return err
	}
	return keyError("plugin.path", err)
}

// spawn starts the process and completes go-plugin's handshake.
func (p *Provider) spawn() (*instance, error) {
	cmd, err := p.command()
	var ce *checksumError
	switch {
	case errors.As(err, &ce):
		return nil, keyError("plugin.sha256", err)
	case err != nil:
		return nil, p.binaryError(err)
	}
	inst := &instance{stuck: make(chan struct{})}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{wire.ProtocolVersion: hostrpc.Plugins()},
		RunnerFunc:       p.h.runnerFunc(p.spec.Name, cmd, &inst.runner),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     p.h.tune.startTimeout,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: p.h.sockDir},
		Logger:           newHCLogger(p.log, p.spec.Name),
		SyncStdout:       newLineLogger(p.log, slog.LevelWarn, "plugin wrote to stdout; log with sdk.Logger instead"),
		SyncStderr:       newLineLogger(p.log, slog.LevelInfo, "plugin stderr"),
	}
	inst.client = plugin.NewClient(cfg)
	rpc, err := inst.client.Client()
	if err == nil {
		var raw any
		if raw, err = rpc.Dispense(wire.PluginName); err == nil {
			inst.rpc = raw.(*hostrpc.Client)
		}
	}
	if err != nil {
		p.kill(inst, false)
		err = startError(err, cmd.Args[0])
		if p.spec.External != nil && isScript(cmd.Path) {
			err = fmt.Errorf("%w; %s is a script, and handoff runs a private copy of it, where the files it imports are not found: make its interpreter (node, python3) the plugin path, pinned, and the script an argument (docs/plugin-protocol.md, Pinning interpreted plugins)", err, cmd.Args[0])
		}
		return nil, p.binaryError(err)
	}
	return inst, nil
}

// startError makes go-plugin's start errors say what to do.
func startError(err error, path string) error {
	var ce *checksumError
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		return fmt.Errorf("%s did not complete the plugin handshake (does it call sdk.Serve, and does it print to stdout before? It must not): %w", path, err)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("%s did not start in time (an overloaded machine, or not a handoff plugin): %w", path, err)
	case strings.Contains(msg, "plugin exited before we could connect"):
		return fmt.Errorf("%s exited during start (is it a handoff plugin built with providers/sdk?): %w", path, err)
	}
	return err
}

// kill stops an instance: gracefully (go-plugin's Shutdown, then SIGKILL
// after killGrace) or at once (SIGKILL to the process group first, for a
// plugin that does not answer). It returns when the process is reaped and
// its socket dir removed.
func (p *Provider) kill(inst *instance, graceful bool) {
	if inst == nil || inst.client == nil {
		return
	}
	if !graceful && inst.runner != nil {
		inst.runner.killGroup()
	}
	done := make(chan struct{})
	go func() {
		inst.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(p.h.tune.killGrace):
		p.log.Warn("plugin did not stop in time; killing it")
		if inst.runner != nil {
			inst.runner.killGroup()
		}
		<-done
	}
	if inst.runner != nil {
		inst.runner.cleanup()
	}
}

// supervise keeps the provider running until the host closes. It watches
// a running instance (inst, nil after a failed first start): a process
// that exits, fails pingFailures health checks in a row, or lets
// stuckCalls calls in a row run past the provider's timeout is killed
// and started again. attempts counts the starts since the backoff was
// last reset (1 after a failed first start).
func (p *Provider) supervise(inst *instance, attempts int) {
	defer close(p.done)
	t := p.h.tune
	for {
		if inst != nil {
			why := p.watch(inst)
			if p.ctx.Err() != nil {
				p.kill(inst, true)
				p.setStopped()
				return
			}
			p.setRestarting(why)
			p.log.Warn("plugin down; restarting", "err", why.Error())
			p.kill(inst, false)
			attempts = nextAttempts(attempts, time.Since(inst.started), t)
		}
		if inst = p.relaunch(&attempts); inst == nil {
			return
		}
	}
}

// nextAttempts is the backoff counter after a crash of a plugin that was
// up for uptime: reset by healthyAfter of uptime, so a plugin that
// crashes now and then is restarted at once, and one that crashes at
// start backs off.
func nextAttempts(attempts int, uptime time.Duration, t tuning) int {
	if uptime >= t.healthyAfter {
		return 0
	}
	return attempts
}

// relaunch starts the plugin until it is up, waiting backoff(attempts)
// before each try, and returns it; nil when the host closes first.
func (p *Provider) relaunch(attempts *int) *instance {
	t := p.h.tune
	for try := p.status().Attempts + 1; ; try++ {
		if d := backoff(*attempts, t.backoffBase, t.backoffMax); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-p.ctx.Done():
				timer.Stop()
				p.setStopped()
				return nil
			case <-timer.C:
			}
		}
		*attempts++
		p.setAttempt(try)
		next, err := p.launch(p.ctx)
		if p.ctx.Err() != nil {
			if next != nil {
				p.kill(next, true)
			}
			p.setStopped()
			return nil
		}
		if err == nil {
			p.setUp(next)
			p.log.Info("plugin started again", "pid", next.runner.pid, "attempt", try)
			return next
		}
		p.setLastErr(err)
		p.log.Error("plugin start failed; retrying with backoff", "attempt", try, "err", err.Error())
	}
}

// watch returns why inst must be restarted, or nil when the host closes.
func (p *Provider) watch(inst *instance) error {
	t := p.h.tune
	tick := time.NewTicker(t.pingEvery)
	defer tick.Stop()
	fails := 0
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case <-inst.rpc.Done():
			return fmt.Errorf("plugin process exited: %s", inst.runner.exitStatus())
		case <-inst.stuck:
			return fmt.Errorf("%d calls in a row ran past the %s timeout, none answered in between; the process (pid %d) is alive but stuck", t.stuckCalls, p.spec.Timeout, inst.runner.pid)
		case <-tick.C:
			ctx, cancel := context.WithTimeout(p.ctx, t.pingTimeout)
			err := inst.rpc.Ping(ctx)
			cancel()
			if err == nil {
				fails = 0
				continue
			}
			if p.ctx.Err() != nil {
				return nil
			}
			fails++
			p.log.Warn("plugin health check failed", "failures", fails, "err", err.Error())
			if fails >= t.pingFailures {
				return fmt.Errorf("%d health checks failed in a row (last: %v); the process (pid %d) is alive but not answering", fails, err, inst.runner.pid)
			}
		}
	}
}

// backoff is the delay before restart attempt n (0-based): none for the
// first, then base·2^(n-1) ±25% jitter, capped at max.
func backoff(n int, base, max time.Duration) time.Duration {
	if n == 0 {
		return 0
	}
	d := base << min(n-1, 20)
	if d > max || d <= 0 {
		d = max
	}
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return min(d+jitter, max)
}

// current returns the running instance, or an ErrUnavailable error.
func (p *Provider) current() (*instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inst != nil {
		return p.inst, nil
	}
	msg := fmt.Sprintf("provider %q is %s", p.spec.Name, p.health)
	switch {
	case p.ctx.Err() != nil:
		msg = fmt.Sprintf("provider %q is stopped (the host is closed, or a reload took it out)", p.spec.Name)
	case p.health == HealthRestarting:
		msg += fmt.Sprintf(" (attempt %d)", p.attempts)
	}
	if p.lastErr != "" {
		msg += ": " + p.lastErr
	}
	return nil, &sdk.Error{Code: sdk.CodeUnavailable, Message: msg}
}

// call runs fn on the current instance under the provider's deadline. A
// call that runs past it is logged with requestID; stuckCalls of them in
// a row, while no call has been answered in time for a whole timeout,
// restart the plugin. A call answered in time, even with an error, resets
// the count, so a plugin that is slow under load but answers is not
// restarted. A call cut short by the caller's earlier deadline counts for
// neither.
func (p *Provider) call(ctx context.Context, capability, requestID string, fn func(context.Context, *hostrpc.Client) error) error {
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	inst, err := p.current()
	if err != nil {
		return err
	}
	if capability != "" && !slices.Contains(inst.info.Capabilities, capability) {
		return fmt.Errorf("provider %q: %w (it is not a %s)", p.spec.Name, ErrUnsupported, capability)
	}
	callerDeadline, callerHas := ctx.Deadline()
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	err = fn(ctx, inst.rpc)
	var se *sdk.Error
	if errors.As(err, &se) && se.Code == sdk.CodeUnavailable && se.Message == hostrpc.DeadlineMessage {
		if d, _ := ctx.Deadline(); callerHas && !callerDeadline.After(d) {
			return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("provider %q did not answer before the caller's deadline", p.spec.Name)}
		}
		p.timedOut(inst, requestID)
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("provider %q did not answer within %s", p.spec.Name, p.spec.Timeout)}
	}
	inst.timeouts.Store(0)
	inst.answered.Store(time.Now().UnixNano())
	return err
}

// timedOut logs a call that ran past the provider's timeout and, at
// stuckCalls in a row with no answer for a whole timeout, has the
// supervisor restart the plugin.
func (p *Provider) timedOut(inst *instance, requestID string) {
	n := int(inst.timeouts.Add(1))
	p.log.Warn("plugin call timed out", "timeout", p.spec.Timeout.String(), "request_id", requestID, "in_a_row", n, "restart_at", p.h.tune.stuckCalls)
	silent := time.Since(time.Unix(0, inst.answered.Load()))
	if n >= p.h.tune.stuckCalls && silent >= p.spec.Timeout {
		inst.stuckOnce.Do(func() { close(inst.stuck) })
	}
}

// Verify runs the direct flow: the identity the payload proves.
func (p *Provider) Verify(ctx context.Context, req sdk.Request) (id sdk.Identity, err error) {
	err = p.call(ctx, "", req.RequestID, func(ctx context.Context, c *hostrpc.Client) error {
		id, err = c.Verify(ctx, req)
		return err
	})
	p.noteCall("verify", err)
	return id, err
}

// Check runs a guard (captcha): nil when the request passes.
func (p *Provider) Check(ctx context.Context, req sdk.Request) error {
	err := p.call(ctx, sdk.CapGuard, req.RequestID, func(ctx context.Context, c *hostrpc.Client) error {
		return c.Check(ctx, req)
	})
	p.noteCall("check", err)
	return err
}

// Begin starts a redirect flow.
func (p *Provider) Begin(ctx context.Context, req sdk.BeginRequest) (res sdk.BeginResult, err error) {
	err = p.call(ctx, sdk.CapRedirector, req.RequestID, func(ctx context.Context, c *hostrpc.Client) error {
		res, err = c.Begin(ctx, req)
		return err
	})
	p.noteCall("begin", err)
	return res, err
}

// Complete finishes a redirect flow.
func (p *Provider) Complete(ctx context.Context, req sdk.CompleteRequest) (id sdk.Identity, err error) {
	err = p.call(ctx, sdk.CapRedirector, "", func(ctx context.Context, c *hostrpc.Client) error {
		id, err = c.Complete(ctx, req)
		return err
	})
	p.noteCall("complete", err)
	return id, err
}

// Refresh trades an IdP refresh token for new tokens.
func (p *Provider) Refresh(ctx context.Context, req sdk.RefreshRequest) (res sdk.RefreshResult, err error) {
	err = p.call(ctx, sdk.CapRefresher, "", func(ctx context.Context, c *hostrpc.Client) error {
		res, err = c.Refresh(ctx, req)
		return err
	})
	p.noteCall("refresh", err)
	return res, err
}

// Enroll registers a credential for a user.
func (p *Provider) Enroll(ctx context.Context, req sdk.EnrollRequest) (res sdk.EnrollResult, err error) {
	err = p.call(ctx, sdk.CapEnroller, "", func(ctx context.Context, c *hostrpc.Client) error {
		res, err = c.Enroll(ctx, req)
		return err
	})
	p.noteCall("enroll", err)
	return res, err
}
