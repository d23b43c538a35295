package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// The backoff between attempts to open a store that could not be reached
// at start: 1 s, doubling, at most 30 s, each with up to a fifth of jitter
// so replicas that start together do not knock together.
const (
	openRetryFirst = time.Second
	openRetryMax   = 30 * time.Second
)

// storeState is whether the daemon's store is open. A daemon on
// PostgreSQL starts while the database is out of reach (replicas must not
// crash-loop through a database outage): it serves at once, answers 503
// store_unavailable and a failing /readyz, and opens the store in the
// background, with backoff, until it can.
type storeState struct {
	ready   atomic.Bool           // d.core and d.limits are set
	opened  chan struct{}         // closed when ready becomes true
	lastErr atomic.Pointer[error] // why the store is not open yet

	mu     sync.Mutex // orders opening against Close
	closed bool
	stop   context.CancelFunc // ends the background opener
	done   chan struct{}      // closed when the opener has returned
}

// storeOpen is nil once the store is open, and before that an error
// matching tokenstore.ErrUnavailable that says why it is not.
func (d *Daemon) storeOpen() error {
	if d.store.ready.Load() {
		return nil
	}
	cause := errors.New("not opened yet")
	if p := d.store.lastErr.Load(); p != nil {
		cause = *p
	}
	return fmt.Errorf("%w: the store is not open: %w", tokenstore.ErrUnavailable, cause)
}

// connect opens the store and the core on it, and makes the first API key
// on a new store. On success the daemon serves from them.
func (d *Daemon) connect(ctx context.Context) error {
	core, err := openCore(ctx, d.cfg, d.openStore, d.log, d.metrics)
	if err != nil {
		return err
	}
	keyID, err := bootstrapKey(ctx, core, d.notice, d.cfg.Secrets.BootstrapKeyFile)
	if err != nil {
		core.Store().Close()
		return err
	}
	if keyID != "" {
		d.record(systemOrigin, Event{Event: string(evKeyCreated), KeyID: keyID, Reason: "bootstrap"})
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if d.store.closed {
		core.Store().Close()
		return tokenstore.ErrClosed
	}
	d.core = core
	d.limits = newCounter(core)
	d.metrics.watchStore(core.Store())
	d.store.ready.Store(true)
	close(d.store.opened)
	return nil
}

// transientOpenError reports whether a failure to open the store at
// start is an outage to wait out (a database out of reach, not answering
// or starting up: the opener says tokenstore.ErrUnavailable) rather than
// a mistake to report (a wrong password or database, a bolt file that
// cannot be opened, a missing key file), which fails the start.
func transientOpenError(err error) bool {
	return errors.Is(err, tokenstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// startOpener opens the store in the background after the first attempt
// failed with err.
func (d *Daemon) startOpener(err error) {
	d.setOpenErr(err)
	ctx, stop := context.WithCancel(context.Background())
	d.store.stop, d.store.done = stop, make(chan struct{})
	go func() {
		defer close(d.store.done)
		wait := openRetryFirst
		for attempt := 1; ; attempt++ {
			d.log.Warn("store unreachable: serving 503 store_unavailable until it opens",
				"driver", d.cfg.Store.Driver, "attempt", attempt, "retry_in", wait.String(), "err", err.Error())
			t := time.NewTimer(wait + rand.N(wait/5))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if err = d.connect(ctx); err == nil {
				d.log.Info("store open", "driver", d.cfg.Store.Driver, "attempts", attempt+1)
				return
			}
			if ctx.Err() != nil {
				return
			}
			d.setOpenErr(err)
			wait = min(2*wait, openRetryMax)
		}
	}()
}

// setOpenErr keeps err as why the store is not open.
func (d *Daemon) setOpenErr(err error) { d.store.lastErr.Store(&err) }

// stopOpener ends the background opener, if any, and returns the core
// once the store is open (nil if it never opened). No core is set after.
func (d *Daemon) stopOpener() *tokenstore.Core {
	d.store.mu.Lock()
	d.store.closed = true
	stop, done := d.store.stop, d.store.done
	d.store.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if !d.store.ready.Load() {
		return nil
	}
	return d.core
}

// pluginKV is the KV space of provider name's plugin. Plugins start
// before the store may be open, so it reaches the core per call.
func (d *Daemon) pluginKV(name string) providers.KV { return lateKV{d: d, ns: "provider/" + name} }

// lateKV is a plugin's KV space that answers ErrUnavailable while the
// store is not open.
type lateKV struct {
	d  *Daemon
	ns string
}

func (k lateKV) kv() (kvAdapter, error) {
	if err := k.d.storeOpen(); err != nil {
		return kvAdapter{}, err
	}
	return kvAdapter{k.d.core.KV(k.ns)}, nil
}

func (k lateKV) Get(ctx context.Context, key string) ([]byte, error) {
	a, err := k.kv()
	if err != nil {
		return nil, err
	}
	return a.Get(ctx, key)
}

func (k lateKV) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	a, err := k.kv()
	if err != nil {
		return err
	}
	return a.Put(ctx, key, value, ttl)
}

func (k lateKV) Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	a, err := k.kv()
	if err != nil {
		return err
	}
	return a.Update(ctx, key, ttl, change)
}

func (k lateKV) Delete(ctx context.Context, key string) error {
	a, err := k.kv()
	if err != nil {
		return err
	}
	return a.Delete(ctx, key)
}

func (k lateKV) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	a, err := k.kv()
	if err != nil {
		return 0, err
	}
	return a.Add(ctx, key, delta, ttl)
}

func (k lateKV) List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error) {
	a, err := k.kv()
	if err != nil {
		return nil, err
	}
	return a.List(ctx, prefix, after, limit)
}

// Interface guards.
var (
	_ providers.KV      = lateKV{}
	_ providers.Updater = lateKV{}
	_ providers.Adder   = lateKV{}
)
