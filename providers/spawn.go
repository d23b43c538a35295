package providers

import (
	"errors"
	"time"

	"github.com/handoffd/handoff/providers/internal/hostrpc"
)

// Process is one plugin process started by Spawn: through the host's real
// launch path, but neither described, configured nor supervised.
type Process struct {
	p    *Provider
	inst *instance
}

// Spawn starts spec's plugin process exactly as Start does (the spec
// checks, the pinned copy, the environment, the process group, and
// go-plugin's handshake with the daemon's handshake config and AutoMTLS)
// and returns it before Describe and Configure, which the caller makes
// through RPC. Nothing restarts it; Stop ends it. It is how
// providertest.RunCommand drives a plugin written in any language through
// the host handoff runs.
func (h *Host) Spawn(spec Spec) (*Process, error) {
	if err := h.prepareRuntimeDir(); err != nil {
		return nil, err
	}
	if h.ctx.Err() != nil {
		return nil, errors.New("providers: host is closed")
	}
	p := newProvider(h, spec)
	if err := h.checkSpec(&p.spec); err != nil {
		p.cancel()
		return nil, err
	}
	inst, err := p.spawn()
	if err != nil {
		p.cancel()
		return nil, err
	}
	return &Process{p: p, inst: inst}, nil
}

// RPC is the host's client of the process: the calls the host makes, with
// the broker-served host KV in Configure.
func (pr *Process) RPC() *hostrpc.Client { return pr.inst.rpc }

// PID is the process id.
func (pr *Process) PID() int { return pr.inst.runner.pid }

// Stop stops the process as the host stops a plugin when it closes:
// go-plugin's GRPCController.Shutdown, then SIGKILL to the process group
// if the process has not exited within go-plugin's 2 s. It returns once
// the process is reaped, with its exit status ("exit status 0", or
// "signal: killed" for a plugin that had to be killed) and how long the
// stop took.
func (pr *Process) Stop() (exit string, took time.Duration) {
	start := time.Now()
	pr.p.kill(pr.inst, true)
	took = time.Since(start)
	pr.p.cancel()
	return pr.inst.runner.exitStatus(), took
}
