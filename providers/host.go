package providers

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoffd/handoff/providers/internal/memkv"
	"github.com/handoffd/handoff/providers/internal/wire"
	"github.com/handoffd/handoff/providers/sdk"
)

// ErrUnsupported is returned for a call to a capability the provider's
// plugin lacks (Begin on a verifier that is not a Redirector, say).
var ErrUnsupported = wire.ErrUnsupported

// DefaultTimeout is a provider's per-call deadline when its Spec has none.
const DefaultTimeout = 5 * time.Second

// Health is a provider's state in Status. Its values are the words
// GET /v1/providers and /readyz show.
type Health string

// The health states. A provider is HealthStarting once, then HealthUp or
// HealthRestarting; it moves between those two until the host closes. Only
// a spec the host refuses (HealthDown) is never started.
const (
	HealthStarting   Health = "starting"   // the first start is under way
	HealthUp         Health = "up"         // serving
	HealthRestarting Health = "restarting" // not serving (it crashed, got stuck, or its start failed); being started again with backoff
	HealthDown       Health = "down"       // not serving and not retried: its spec is invalid, or the host is closed
)

// Spec is one configured provider.
type Spec struct {
	// Name is the provider's name, unique in the host.
	Name string
	// Kind is a built-in kind (a key of Options.Builtins). With External
	// set it is only a label.
	Kind string
	// External, when set, runs a third-party plugin binary.
	External *External
	// Config is the provider's config section as JSON, handed to the
	// plugin's Configure at every start.
	Config json.RawMessage
	// Timeout is the per-call deadline; zero is DefaultTimeout.
	Timeout time.Duration
	// Optional keeps a failed first start out of Start's error: the
	// provider is retried with backoff like a crashed one, and the rest
	// serve meanwhile. Every provider is retried; Optional only says
	// whether its caller may serve without it.
	Optional bool
}

// External is a third-party plugin binary, pinned by its SHA-256.
type External struct {
	// Path is the binary: a file path (relative to the daemon's working
	// directory), not looked up in PATH.
	Path string
	// SHA256 is the hex SHA-256 of the binary (`sha256sum`); required.
	// The binary runs from a private copy whose hash was checked as it
	// was made, at the first start and every restart (see pinned).
	SHA256 string
	// Args are passed to the binary.
	Args []string
	// Env is the plugin's environment, besides PATH, HOME, TZ and the
	// proxy and CA variables passed from the host. Nothing else of the
	// host's environment reaches a plugin.
	Env map[string]string
}

// KV is a key-value space the host serves to one provider's plugin (the
// daemon's store, namespaced to the provider). A miss is an error matching
// sdk.ErrNotFound. A KV that also implements Updater gives plugins an
// atomic CompareAndSwap and Add across replicas; without it, both are
// atomic within this process only. One that implements Adder serves
// plugins' Add by its own.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error)
}

// Updater is the optional transactional update of a KV, with the
// signature of tokenstore.KV.Update: change gets the current value (nil
// when absent) and returns the new one, nil to delete, or an error that
// aborts and is returned.
type Updater interface {
	Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error
}

// Adder is the optional atomic counter of a KV, with the signature and
// semantics of sdk.KV.Add (tokenstore.KV.Add is one): it adds delta to the
// 8-byte big-endian counter under key in one transaction and returns the
// sum; ttl above zero expires it ttl after this add.
type Adder interface {
	Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
}

// Options configure a Host.
type Options struct {
	// Builtins are the kinds built into Executable, served by re-executing
	// it with BuiltinArgs(kind); the binary's `plugin <kind>` command calls
	// sdk.Serve with the same factory.
	Builtins map[string]sdk.Factory
	// Executable is the binary to re-execute for built-ins; empty is
	// os.Executable().
	Executable string
	// BuiltinArgs are the arguments for a built-in kind; nil is
	// []string{"plugin", kind}.
	BuiltinArgs func(kind string) []string
	// KV returns the key-value space of a provider; nil gives each
	// provider an in-memory one (lost on exit).
	KV func(provider string) KV
	// Logger receives the host's logs and the plugins' (under
	// provider=<name>); nil discards them.
	Logger *slog.Logger
	// RuntimeDir holds the plugins' unix sockets, one directory per plugin
	// process, removed when it is reaped. Empty is $XDG_RUNTIME_DIR/handoff,
	// else <os.TempDir()>/handoff-<uid>. Its absolute path must be at
	// most 56 bytes (unix socket paths are limited to 108); a longer one
	// is replaced by the default, with a warning.
	RuntimeDir string
}

// Status is a provider's state, for GET /v1/providers and health checks.
type Status struct {
	Name           string
	Kind           string
	Flows          []string
	Capabilities   []string
	ProvesIdentity bool
	// Optional is Spec.Optional.
	Optional bool
	// Health is the provider's state.
	Health Health
	// LastError is why the provider last failed to start or went down.
	LastError string
	// LastCallError is the last call the plugin failed with
	// sdk.ErrMisconfigured (a service it depends on refused its own
	// config, as an IdP refusing the client credentials), at
	// LastCallErrorAt; empty once the same call succeeds again. The
	// provider stays up meanwhile: its process is fine, its config is not.
	LastCallError   string
	LastCallErrorAt time.Time
	// Restarts counts successful restarts after a crash.
	Restarts int
	// Attempts counts the starts tried since the provider was last up
	// (while HealthStarting or HealthRestarting), the one under way
	// included; 0 while it is up.
	Attempts int
	// PID is the plugin process while it is up, else 0.
	PID int
}

// tuning holds the supervisor's timings; tests shorten them.
type tuning struct {
	pingEvery    time.Duration // health check interval
	pingTimeout  time.Duration // one health check's deadline
	pingFailures int           // failed checks in a row that restart a plugin
	backoffBase  time.Duration // second restart's delay; doubles after
	backoffMax   time.Duration
	healthyAfter time.Duration // uptime that resets the backoff
	startTimeout time.Duration // spawn to handshake; also Describe+Configure
	killGrace    time.Duration // graceful stop before SIGKILL
	stuckCalls   int           // calls in a row past the provider's timeout that restart a plugin
}

var defaultTuning = tuning{
	pingEvery:    5 * time.Second,
	pingTimeout:  2 * time.Second,
	pingFailures: 3,
	backoffBase:  200 * time.Millisecond,
	backoffMax:   30 * time.Second,
	healthyAfter: 2 * time.Second, // below 3 s: a plugin crashing every 3 s is restarted at once, not after 30 s
	startTimeout: 10 * time.Second,
	killGrace:    3 * time.Second,
	stuckCalls:   3,
}

// Host launches and supervises the providers' plugin processes.
type Host struct {
	opts  Options
	log   *slog.Logger
	tune  tuning
	spawn *spawner
	pins  *pinned // verified copies of pinned binaries

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // launches and supervisors

	mu        sync.Mutex
	providers map[string]*Provider
	order     []string
	sockDir   string
	closed    bool
	closeOnce sync.Once
}

// New returns a Host; Start launches providers, Close stops them all.
func New(opts Options) *Host {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.BuiltinArgs == nil {
		opts.BuiltinArgs = func(kind string) []string { return []string{"plugin", kind} }
	}
	if opts.KV == nil {
		var mu sync.Mutex
		kvs := map[string]KV{}
		opts.KV = func(name string) KV {
			mu.Lock()
			defer mu.Unlock()
			if kvs[name] == nil {
				kvs[name] = memkv.New()
			}
			return kvs[name]
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Host{
		opts: opts, log: log.With("component", "providers"), tune: defaultTuning,
		spawn: newSpawner(), pins: &pinned{log: log}, ctx: ctx, cancel: cancel, providers: map[string]*Provider{},
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Start launches every spec's plugin concurrently and waits until each has
// started or failed its first start. A spec the host refuses (an invalid
// name, an unknown kind, a missing or malformed pin) is HealthDown and
// never started. Every other provider is supervised until Close: one whose
// first start fails (a bad sha256, a missing binary, a Configure error...)
// and one that crashes or gets stuck is started again with backoff, for
// ever. The returned error joins, naming each provider, the refused specs
// and the failed first starts of providers that are not Optional; the
// caller decides whether to serve without them. ctx bounds the first
// start only.
func (h *Host) Start(ctx context.Context, specs []Spec) error {
	if err := h.prepareRuntimeDir(); err != nil {
		return err
	}
	var (
		errsMu sync.Mutex
		errs   []error
		wg     sync.WaitGroup
	)
	fail := func(name string, err error) {
		errsMu.Lock()
		errs = append(errs, fmt.Errorf("provider %q: %w", name, err))
		errsMu.Unlock()
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("providers: host is closed")
	}
	var launch []*Provider
	for _, spec := range specs {
		if _, dup := h.providers[spec.Name]; dup {
			fail(spec.Name, errors.New("a provider with this name is already started"))
			continue
		}
		p := newProvider(h, spec)
		h.providers[spec.Name] = p
		h.order = append(h.order, spec.Name)
		if err := h.checkSpec(&p.spec); err != nil {
			p.refused = true
			p.setRefused(err)
			fail(spec.Name, err)
			continue
		}
		launch = append(launch, p)
	}
	h.wg.Add(len(launch))
	h.mu.Unlock()

	for _, p := range launch {
		wg.Add(1)
		go func() {
			defer h.wg.Done()
			inst, err := p.launch(ctx)
			if err != nil {
				p.setStartFailed(err)
				if !p.spec.Optional {
					fail(p.spec.Name, err)
				}
				wg.Done()
				p.supervise(nil, 1)
				return
			}
			p.setUp(inst)
			wg.Done()
			p.supervise(inst, 0)
		}()
	}
	wg.Wait()
	for _, p := range launch {
		switch st := p.status(); {
		case st.Health == HealthUp:
			h.log.Info("provider started", "provider", st.Name, "kind", st.Kind, "pid", st.PID, "flows", st.Flows, "capabilities", st.Capabilities)
		case st.Optional:
			h.log.Warn("optional provider failed to start; retrying with backoff", "provider", st.Name, "err", st.LastError)
		default:
			h.log.Error("provider failed to start", "provider", st.Name, "err", st.LastError)
		}
	}
	return errors.Join(errs...)
}

// KeyError is a start failure caused by one key of a provider's config
// section, so `handoff config check` can name it: "name", "kind",
// "plugin.path", "plugin.sha256" or "config". Its message is Err's.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Err.Error() }

func (e *KeyError) Unwrap() error { return e.Err }

func keyError(key string, err error) error { return &KeyError{Key: key, Err: err} }

func (h *Host) checkSpec(s *Spec) error {
	if !nameRE.MatchString(s.Name) {
		return keyError("name", fmt.Errorf("invalid name %q: want 1-64 letters, digits, '_', '.' or '-'", s.Name))
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.External != nil {
		switch {
		case s.External.Path == "":
			return keyError("plugin.path", errors.New("plugin: path is required"))
		case s.External.SHA256 == "":
			return keyError("plugin.sha256", fmt.Errorf("plugin: sha256 is required (pin the binary: sha256sum %s)", s.External.Path))
		}
		if b, err := hex.DecodeString(s.External.SHA256); err != nil || len(b) != 32 {
			return keyError("plugin.sha256", fmt.Errorf("plugin: sha256 %q is not 64 hex digits", s.External.SHA256))
		}
		return nil
	}
	if s.Kind == "" {
		return keyError("kind", errors.New("either a built-in kind or a plugin binary is required"))
	}
	if _, ok := h.opts.Builtins[s.Kind]; !ok {
		kinds := make([]string, 0, len(h.opts.Builtins))
		for k := range h.opts.Builtins {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		return keyError("kind", fmt.Errorf("unknown kind %q (built-in kinds: %s)", s.Kind, strings.Join(kinds, ", ")))
	}
	return nil
}

// Probe starts spec's plugin once, as Start would (the pin, the
// handshake, Describe, Configure with spec.Config), stops it again and
// returns what Describe reported. It is `handoff config check`'s test of
// a provider: a failure caused by one key of the provider's section is a
// *KeyError naming it. The provider is not added to the host.
func (h *Host) Probe(ctx context.Context, spec Spec) (sdk.Info, error) {
	if err := h.prepareRuntimeDir(); err != nil {
		return sdk.Info{}, err
	}
	if h.ctx.Err() != nil {
		return sdk.Info{}, errors.New("providers: host is closed")
	}
	p := newProvider(h, spec)
	if err := h.checkSpec(&p.spec); err != nil {
		return sdk.Info{}, err
	}
	inst, err := p.launch(ctx)
	if err != nil {
		return sdk.Info{}, err
	}
	p.kill(inst, true)
	return inst.info, nil
}

// prepareRuntimeDir makes RuntimeDir/h<pid>, the parent of this host's
// per-plugin socket dirs, and removes the dirs of hosts that are gone
// (killed before they could clean up).
func (h *Host) prepareRuntimeDir() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sockDir != "" {
		return nil
	}
	dir, err := filepath.Abs(h.opts.RuntimeDir)
	if h.opts.RuntimeDir == "" || err != nil || len(dir) > maxRuntimeDir {
		if h.opts.RuntimeDir != "" {
			h.log.Warn("runtime dir too long for unix socket paths; using the default", "runtime_dir", h.opts.RuntimeDir, "max_bytes", maxRuntimeDir)
		}
		dir = defaultRuntimeDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("providers: runtime dir: %w", err)
	}
	sweepRuntimeDir(dir, h.log)
	sock := filepath.Join(dir, "h"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return fmt.Errorf("providers: runtime dir: %w", err)
	}
	h.sockDir = sock
	return nil
}

// maxRuntimeDir is the longest runtime dir that leaves room for
// <dir>/h<pid>/plugin-dirNNNNNNNNNN/pluginNNNNNNNNNN in a unix socket
// address (108 bytes with the terminating NUL).
const maxRuntimeDir = 56

func defaultRuntimeDir() string {
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && len(x) < maxRuntimeDir-8 {
		return filepath.Join(x, "handoff")
	}
	return filepath.Join(os.TempDir(), "handoff-"+strconv.Itoa(os.Getuid()))
}

// sweepRuntimeDir removes h<pid> dirs of processes that no longer exist.
func sweepRuntimeDir(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "h"))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "h") || err != nil || pid == os.Getpid() || pidAlive(pid) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err == nil {
			log.Info("removed stale plugin socket dir", "dir", filepath.Join(dir, e.Name()))
		}
	}
}

// Provider returns a provider given to Start, whatever its health: while
// it is not up its calls fail with an error matching sdk.ErrUnavailable. A
// spec the host refused is not returned (its Status says why).
func (h *Host) Provider(name string) (*Provider, bool) {
	h.mu.Lock()
	p, ok := h.providers[name]
	h.mu.Unlock()
	if !ok || p.refused {
		return nil, false
	}
	return p, true
}

// Status reports every provider given to Start, in order.
func (h *Host) Status() []Status {
	h.mu.Lock()
	ps := make([]*Provider, 0, len(h.order))
	for _, n := range h.order {
		ps = append(ps, h.providers[n])
	}
	h.mu.Unlock()
	out := make([]Status, len(ps))
	for i, p := range ps {
		out[i] = p.status()
	}
	return out
}

// Close stops every plugin (gracefully, then SIGKILL to its process group)
// and waits until each is reaped and its socket dir removed. It is safe to
// call more than once.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()
		h.wg.Wait()
		h.spawn.close()
		h.pins.close()
		if h.sockDir != "" {
			_ = os.RemoveAll(h.sockDir)
		}
	})
	return nil
}
