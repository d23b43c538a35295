package providers

import (
	"context"
	"errors"
	"slices"
	"time"
)

// drainGrace is how long a provider taken out by Swap keeps answering
// before it is stopped, at least: a request that picked it just before the
// swap has time to begin its call. Calls under way then get until the
// provider's timeout to finish.
const drainGrace = 200 * time.Millisecond

// Stage starts spec's plugin as Start would (the pin, the handshake,
// Describe, Configure with spec.Config) without adding it to the host:
// the returned provider serves no name until Swap puts it in, and Discard
// stops it. A spec the host refuses returns a nil provider and the
// refusal (a *KeyError where one key is to blame). A failed start returns
// the provider, not up, with the error: Swap would supervise it with
// backoff like a failed first start, Discard drops it.
func (h *Host) Stage(ctx context.Context, spec Spec) (*Provider, error) {
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
	inst, err := p.launch(ctx)
	if err != nil {
		p.setStartFailed(err)
		return p, err
	}
	p.setUp(inst)
	p.staged = inst
	p.log.Info("provider started for a reload", "kind", spec.Kind, "pid", inst.runner.pid, "flows", inst.info.Flows)
	return p, nil
}

// Discard stops providers Stage started and Swap did not take.
func (h *Host) Discard(staged []*Provider) {
	for _, p := range staged {
		if p == nil {
			continue
		}
		p.cancel()
		p.kill(p.staged, true)
		p.setStopped()
	}
}

// Swap puts staged providers in under their names, in place of the
// providers of those names (a new name goes last in Status), takes the
// providers named in remove out, and stops every provider it replaced or
// took out. Staged providers are supervised from then on, like those
// given to Start. A provider taken out is stopped once its calls under way
// have finished (at most its timeout after drainGrace); Swap returns when
// all of them are stopped. Providers neither staged nor named serve on
// untouched.
func (h *Host) Swap(staged []*Provider, remove []string) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.Discard(staged)
		return
	}
	var out []*Provider
	for _, p := range staged {
		if old, ok := h.providers[p.spec.Name]; ok {
			out = append(out, old)
		} else {
			h.order = append(h.order, p.spec.Name)
		}
		h.providers[p.spec.Name] = p
	}
	for _, name := range remove {
		if old, ok := h.providers[name]; ok {
			out = append(out, old)
			delete(h.providers, name)
			h.order = slices.DeleteFunc(h.order, func(n string) bool { return n == name })
		}
	}
	h.wg.Add(len(staged))
	h.mu.Unlock()

	for _, p := range staged {
		inst, attempts := p.staged, 0
		if inst == nil {
			attempts = 1
		}
		p.staged = nil
		go func() {
			defer h.wg.Done()
			p.supervise(inst, attempts)
		}()
	}
	done := make(chan struct{}, len(out))
	for _, p := range out {
		go func() {
			p.retire()
			done <- struct{}{}
		}()
	}
	for range out {
		<-done
	}
}

// retire stops a provider Swap took out: it waits drainGrace, then until
// its calls under way have finished or its timeout has passed, then stops
// its supervisor, which stops the plugin gracefully.
func (p *Provider) retire() {
	if p.refused {
		p.cancel()
		return
	}
	time.Sleep(drainGrace)
	for deadline := time.Now().Add(p.spec.Timeout); p.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.cancel()
	<-p.done
	p.log.Info("provider stopped: a reload took it out", "calls_cut", p.inflight.Load())
}

// Health returns the provider's state.
func (p *Provider) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}
