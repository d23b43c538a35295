package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// OpenStore opens the store cfg.Store names. The daemon knows no backend:
// main.go chooses it. An error matching tokenstore.ErrUnavailable is an
// outage to wait out (a database out of reach): the daemon starts anyway
// and opens the store in the background; any other fails the start.
type OpenStore func(ctx context.Context, cfg config.Config, log *slog.Logger) (tokenstore.Store, error)

// Options are what New needs besides the config.
type Options struct {
	Config config.Config
	// OpenStore opens the token core's store (required).
	OpenStore OpenStore
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Notice receives the one-time message with the first API key (stderr).
	Notice io.Writer
	// Builtins are the plugin kinds built into this binary, served out of
	// process by re-executing it (main.go's explicit map).
	Builtins map[string]sdk.Factory
	// Executable is the binary to re-execute for built-ins; empty is this
	// process's own.
	Executable string
	// RuntimeDir holds the plugins' sockets; empty is the host's default
	// ($XDG_RUNTIME_DIR/handoff, else a per-user dir under the temp dir).
	RuntimeDir string
	// Reload reads the config again (main's loader: the file, the
	// environment and the flags) for a SIGHUP; nil: SIGHUP reloads
	// nothing (it still reopens the audit log).
	Reload func() (config.Config, error)
}

// Daemon is one running handoff.
type Daemon struct {
	cfg       config.Config
	openStore OpenStore
	log       *slog.Logger
	notice    io.Writer
	core      *tokenstore.Core // nil until the store opens (see storeOpen)
	limits    counter
	store     storeState
	proxies   proxies
	metrics   *metrics
	audit     *auditor     // nil: audit.sink is off
	logs      *logThrottle // rate-limits lines a failure repeats (logLimited)
	handler   http.Handler

	host     *providers.Host
	provs    atomic.Pointer[providerSet] // swapped whole by Reload
	reloadMu sync.Mutex                  // one Reload at a time
	builtins map[string]sdk.Factory      // for Reload's CheckConfig
	load     func() (config.Config, error)
	bg       *background

	listenAddr atomic.Pointer[string] // host:port Serve listens on, for baseURL
	bound      atomic.Value           // boundAddr: the address Serve listens on, for Reload's checkPublicURLFor

	unknownOrigins originSet // browser origins logged as not in cors.origins

	keysMu   sync.Mutex // guards keysRead
	keysRead time.Time  // when jwks last read the signing keys

	secrets atomic.Pointer[[]string] // the config's secret values, for scrub; set at first use, grown by Reload

	closeOnce sync.Once
	closeErr  error
}

// New opens the store and the token core and builds the HTTP handler. On
// an error everything opened so far is closed again.
func New(ctx context.Context, opts Options) (*Daemon, error) {
	if err := CheckConfig(ctx, opts.Config, opts.Builtins); err != nil {
		return nil, err
	}
	if opts.OpenStore == nil {
		return nil, errors.New("daemon: Options.OpenStore is nil")
	}
	d := &Daemon{cfg: opts.Config, openStore: opts.OpenStore, log: opts.Logger, notice: opts.Notice, metrics: newMetrics(), logs: newLogThrottle(logInterval), bg: newBackground(), builtins: opts.Builtins, load: opts.Reload}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.notice == nil {
		d.notice = io.Discard
	}
	audit, err := newAuditor(d.cfg.Audit, d.log, d.metrics, os.Stdout)
	if err != nil {
		return nil, err
	}
	d.audit = audit
	d.store.opened = make(chan struct{})
	if err := d.connect(ctx); err != nil {
		if !transientOpenError(err) {
			d.Close()
			return nil, err
		}
		d.startOpener(err)
	}
	d.proxies = newProxies(d.cfg.HTTP)
	if d.cfg.HTTP.TrustProxy {
		d.log.Warn("http.trust_proxy is deprecated: it trusts loopback and the private ranges as proxies; list your proxies in http.trusted_proxies instead")
	}
	if err := d.startProviders(ctx, opts); err != nil {
		d.Close()
		return nil, err
	}
	d.watchProviders(250 * time.Millisecond)
	d.handler = d.routes()
	return d, nil
}

// CheckConfig is what New checks before anything starts: Validate, and
// each built-in provider's deliver.via against what its kind's Describe
// reports (builtins' factories answer Describe in process; nothing is
// configured or started). Third-party plugins are checked by New once
// they have started; CheckStart, `handoff config check`, starts them all.
func CheckConfig(ctx context.Context, cfg config.Config, builtins map[string]sdk.Factory) error {
	return checkConfig(cfg, builtinProves(ctx, builtins), nil)
}

// checkConfig joins Validate's problems, ValidateDelivery's with proves,
// and more into one Problems (nil when there are none).
func checkConfig(cfg config.Config, proves config.ProvesIdentity, more config.Problems) error {
	var ps config.Problems
	for _, err := range []error{cfg.Validate(), cfg.ValidateDelivery(proves)} {
		var found config.Problems
		switch {
		case errors.As(err, &found):
			ps = append(ps, found...)
		case err != nil:
			return err
		}
	}
	ps = append(ps, more...)
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// builtinProves answers config.ProvesIdentity for the built-in kinds.
func builtinProves(ctx context.Context, builtins map[string]sdk.Factory) config.ProvesIdentity {
	return func(p config.Provider) (bool, bool) {
		f := builtins[p.Kind]
		if p.Plugin != nil || f == nil { // nil: a kind served by another binary (the bench's)
			return false, false
		}
		info, err := f().Describe(ctx)
		if err != nil {
			return false, false
		}
		return info.ProvesIdentity, true
	}
}

// OpenCore opens the configured store with open and the token core on it.
// Closing core.Store() releases it.
func OpenCore(ctx context.Context, cfg config.Config, open OpenStore) (*tokenstore.Core, error) {
	return openCore(ctx, cfg, open, nil, nil)
}

func openCore(ctx context.Context, cfg config.Config, open OpenStore, log *slog.Logger, m *metrics) (*tokenstore.Core, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	sealer, err := openSealer(ctx, cfg, store, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	core, err := tokenstore.New(ctx, store, tokenstore.Options{
		TokenLength:     cfg.Tokens.Length,
		TokenExpire:     cfg.Tokens.Expire,
		MaxAttempts:     cfg.Tokens.MaxAttempts,
		MaxOutstanding:  cfg.Tokens.MaxOutstanding,
		SessionDuration: cfg.Sessions.Duration,
		MaxSessions:     cfg.Sessions.MaxPerUser,
		Pepper:          []byte(cfg.Tokens.Pepper),
		Sealer:          sealer,
		StoreTimeout:    cfg.Store.Timeout,
		KeyCacheTTL:     cfg.Store.KeyCache,
		Observe:         m.observeStore,
	})
	if errors.Is(err, tokenstore.ErrSealed) || errors.Is(err, tokenstore.ErrSealBroken) {
		store.Close()
		path, _ := cfg.SecretsKeyFile()
		return nil, fmt.Errorf("secrets.key_file: %s: open the store's secrets: %w", path, err)
	}
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open token core: %w", err)
	}
	return core, nil
}

// BootstrapKey creates an API key with every scope on a store that never
// had one, and reports whether it made one. Of several replicas starting
// at once on one empty database, one does. It writes the key to a new
// 0600 file when file is set, else to w, the one time it is shown.
//
// A file that cannot be made (it exists, say) fails the start and undoes
// the key, so the next start makes one again: a key written nowhere would
// be a live credential no one holds.
func BootstrapKey(ctx context.Context, core *tokenstore.Core, w io.Writer, file string) (bool, error) {
	id, err := bootstrapKey(ctx, core, w, file)
	return id != "", err
}

// bootstrapKey is BootstrapKey; it returns the id of the key it made, or
// "".
func bootstrapKey(ctx context.Context, core *tokenstore.Core, w io.Writer, file string) (string, error) {
	k, secret, created, err := core.CreateFirstKey(ctx, "bootstrap", Scopes)
	if err != nil {
		return "", fmt.Errorf("create the first api key: %w", err)
	}
	if !created {
		return "", nil
	}
	if file == "" {
		fmt.Fprintf(w, "\nhandoff: first start, created an API key with all scopes (shown once, keep it safe):\n\n    %s\n\n"+
			"Manage keys with `handoff keys list|create|revoke`. To have it written to a 0600 file\n"+
			"instead of here, start with --bootstrap-key-file F (or secrets.bootstrap_key_file).\n\n", secret)
		return k.ID, nil
	}
	if err := writeNewFile(file, []byte(secret+"\n")); err != nil {
		if uerr := core.UndoFirstKey(ctx, k.ID); uerr != nil {
			return "", fmt.Errorf("secrets.bootstrap_key_file: %w (and undo the first api key: %v)", err, uerr)
		}
		return "", fmt.Errorf("secrets.bootstrap_key_file: write the first api key: %w (no key was kept; remove the file or pick another path)", err)
	}
	fmt.Fprintf(w, "\nhandoff: first start, created an API key with all scopes and wrote it to %s (mode 0600).\nManage keys with `handoff keys list|create|revoke`.\n\n", file)
	return k.ID, nil
}

// Core returns the token core, or nil while the store is not open yet.
func (d *Daemon) Core() *tokenstore.Core {
	if d.storeOpen() != nil {
		return nil
	}
	return d.core
}

// Handler returns the HTTP handler.
func (d *Daemon) Handler() http.Handler { return d.handler }

// Run listens on the configured address and serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return d.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully: in-flight
// requests get up to http.shutdown_timeout to finish. It closes ln.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	if err := d.checkPublicURL(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	bound := listenHostPort(d.cfg.Listen, ln.Addr())
	d.listenAddr.Store(&bound)
	d.bound.Store(boundAddr{ln.Addr()})
	srv := &http.Server{
		Handler:           d.handler,
		ReadTimeout:       d.cfg.HTTP.ReadTimeout,
		ReadHeaderTimeout: min(d.cfg.HTTP.ReadTimeout, 5*time.Second),
		WriteTimeout:      d.cfg.HTTP.WriteTimeout,
		IdleTimeout:       d.cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go func() {
		select {
		case <-sweepCtx.Done():
			return
		case <-d.store.opened:
		}
		go d.refreshSigningKeys(sweepCtx, time.Minute)
		d.core.RunSweeper(sweepCtx, d.cfg.Store.SweepInterval, func(err error) {
			d.logLimited(context.Background(), slog.LevelWarn, "sweep expired records", "err", err.Error())
		})
	}()
	d.onHUP(sweepCtx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	d.log.Info("handoff serving", "addr", ln.Addr().String(), "project", d.cfg.Project, "store", d.cfg.Store.Driver)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	d.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), d.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ping checks that the store is open and answers and, where the store
// can tell, that it takes writes: bolt's Ping (its last commit failed on a
// full or failing disk, and a probe write still fails), PostgreSQL's (the
// server is not read-only).
func (d *Daemon) ping(ctx context.Context) error {
	if err := d.storeOpen(); err != nil {
		return err
	}
	return d.core.Store().Ping(ctx)
}

// Close releases the store. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.bg.Close()
		if d.host != nil {
			d.host.Close()
		}
		if d.audit != nil {
			if err := d.audit.Close(); err != nil {
				d.log.Warn("close the audit log", "err", err.Error())
			}
		}
		if core := d.stopOpener(); core != nil {
			d.closeErr = core.Store().Close()
		}
	})
	return d.closeErr
}

// levelFor is the access log level of an answer. A 503 (store or provider
// unavailable) stays at info: its cause is logged where it is known, rate
// limited, so a full disk answering every request with 503 does not also
// write a warning per request.
func levelFor(status int) slog.Level {
	if status >= 500 && status != http.StatusServiceUnavailable {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// refreshSigningKeys re-reads the JWT signing keys every interval, so a key
// rotated through another replica (handoff keys rotate-signing) is used
// here too.
func (d *Daemon) refreshSigningKeys(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.core.ReloadSigningKeys(ctx); err != nil && ctx.Err() == nil {
				d.logLimited(ctx, slog.LevelWarn, "reload signing keys", "err", err.Error())
			}
		}
	}
}
