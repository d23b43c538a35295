package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/handoffd/handoff/tokenstore"
)

// Interface guards.
var (
	_ tokenstore.Store          = (*Store)(nil)
	_ tokenstore.MetaTx         = (*metaTx)(nil)
	_ tokenstore.FigureReporter = (*Store)(nil)
)

// Errors of Open. They belong to this backend (the Store contract has no
// notion of a server or a schema); callers check them with errors.Is.
var (
	// ErrUnreachable is the error of Open when no connection to the
	// server can be made (refused, timed out, no route, TLS failure).
	ErrUnreachable = errors.New("postgres: server unreachable")
	// ErrSchemaTooNew is the error of Open when the database was
	// migrated by a newer handoff than this one.
	ErrSchemaTooNew = errors.New("postgres: schema is newer than this build")
)

// Defaults of Options.
const (
	DefaultMaxConns       = 16
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 5 * time.Second
	DefaultWriters        = 4
)

// How a connection whose peer went silent (a network partition, a server
// host that died without closing its sockets) is found dead by the
// kernel, not by a request that waits on it: keepalive probes after 5 s of
// quiet, every 5 s, and TCP_USER_TIMEOUT, which drops a connection whose
// sent bytes (a probe or a statement) stay unacknowledged for 15 s.
const (
	keepAliveIdle     = 5 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 3
	tcpUserTimeout    = 15 * time.Second
)

// What a step does when its connection breaks before it could commit.
const (
	connRetries = 3 // attempts lost to broken connections
	// suspectWindow is how long after a broken connection every pooled
	// one is pinged before use. A dead connection idle for over a second
	// is pinged anyway, so this only has to cover that second.
	suspectWindow = 2 * time.Second
)

// Options configure Open.
type Options struct {
	// DSN is a libpq connection string or URL, e.g.
	// postgres://handoff:secret@db:5432/handoff?sslmode=verify-full.
	// pgx's own parameters are accepted too (pool_max_conns,
	// pool_min_conns). Connect directly or through a session-mode pooler
	// (see the package doc).
	DSN string
	// MaxConns caps the pool (default DefaultMaxConns, or pool_max_conns
	// from the DSN).
	MaxConns int32
	// MinConns is how many connections the pool keeps open while idle
	// (default a quarter of MaxConns, at least 1), so a request after a
	// quiet period does not pay for a connection set-up.
	MinConns int32
	// Schema, when set, is where the tables live: it is created if absent
	// and becomes the connections' search_path. Empty uses the DSN's
	// search_path (usually public).
	Schema string
	// Logger receives open, migration and retry events; nil discards.
	Logger *slog.Logger
	// Timeout bounds the store's own work off a caller's deadline: Ping,
	// and settling a transaction whose COMMIT outcome is unknown (see
	// tokenstore.ErrCommitUnknown). Default DefaultTimeout.
	Timeout time.Duration
	// Writers caps the transactions of hot writes (Mint, Exchange) that
	// run at once (default DefaultWriters, at most MaxConns); the steps
	// that come while they all run wait in a group and share a
	// transaction (see the package doc). A few large groups cost the
	// server less than many small ones: each transaction is a backend
	// woken, plans looked up and a WAL flush.
	Writers int
}

// Store is a tokenstore.Store on PostgreSQL. It is safe for concurrent use
// by several goroutines and by several processes sharing one database.
type Store struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	addr    string
	timeout time.Duration

	suspect *atomic.Int64 // until when (unix ns) pooled connections are pinged

	closeOnce sync.Once
	closed    atomic.Bool

	steps       atomic.Uint64
	roundTrips  atomic.Uint64
	connRetries atomic.Uint64
	unknowns    atomic.Uint64
	grouped     atomic.Uint64
	groupAlone  atomic.Uint64

	groups  groups        // the group of hot steps open to new ones (group.go)
	writers chan struct{} // a token for each group running (Options.Writers)
}

// Open connects to PostgreSQL, checks that the server answers, and
// migrates the schema to the version this build knows. A server that
// cannot be reached gives an error matching ErrUnreachable that names
// host:port (never the password); a schema written by a newer handoff
// gives ErrSchemaTooNew.
func Open(ctx context.Context, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("store", "postgres")

	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// pgconn masks the password of a URL; a malformed keyword DSN
		// could still carry it, so the message is scrubbed once more.
		return nil, fmt.Errorf("postgres: parse dsn: %s", scrub(err.Error(), passwordOf(opts.DSN)))
	}
	password := cfg.ConnConfig.Password
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(opts.DSN, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	switch {
	case opts.MinConns > 0:
		cfg.MinConns = min(opts.MinConns, cfg.MaxConns)
	case !strings.Contains(opts.DSN, "pool_min_conns"):
		cfg.MinConns = max(1, cfg.MaxConns/4)
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.ConnConfig.DialFunc = dialer(cfg.ConnConfig.ConnectTimeout).DialContext
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	for k, v := range map[string]string{
		"application_name": "handoff",
		// A transaction of this store is milliseconds long; one left
		// open (a wedged or paused process) must not hold its row locks
		// for ever. The server closes such a connection and the pool
		// replaces it.
		"idle_in_transaction_session_timeout": "60s",
	} {
		if _, ok := cfg.ConnConfig.RuntimeParams[k]; !ok {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	if opts.Schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	addr := address(cfg.ConnConfig)
	// The pool pings a connection idle for over a second before handing
	// it out. Right after a connection broke (a restart or failover of
	// the server breaks them all) it pings every one, so the dead ones
	// are replaced instead of failing a request each.
	var suspect atomic.Int64
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Second || time.Now().UnixNano() < suspect.Load()
	}

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %s", addr, scrub(err.Error(), password))
	}
	pingCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, connectError(addr, cfg.ConnConfig.User, password, err)
	}
	from, to, err := migrate(ctx, pool, opts.Schema, log)
	if err != nil {
		pool.Close()
		switch {
		case errors.Is(err, ErrSchemaTooNew):
			return nil, err
		case serverDown(err):
			// The server went away under the migration, which rolled
			// back: an outage, to be waited out like a refused connection.
			return nil, &unreachableError{msg: fmt.Sprintf("postgres: migrate on %s: %s", addr, scrub(err.Error(), password)), cause: err}
		}
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	if to != from {
		log.Info("postgres schema migrated", "from", from, "to", to, "schema", opts.Schema)
	}
	writers := opts.Writers
	if writers <= 0 {
		writers = DefaultWriters
	}
	writers = min(writers, int(cfg.MaxConns))
	log.Info("postgres store open", "addr", addr, "schema", opts.Schema, "version", to,
		"max_conns", cfg.MaxConns, "min_conns", cfg.MinConns, "writers", writers)
	return &Store{pool: pool, log: log, addr: addr, timeout: opts.Timeout, suspect: &suspect,
		writers: make(chan struct{}, writers)}, nil
}

// dialer makes the connections: TCP keepalives and TCP_USER_TIMEOUT (see
// keepAliveIdle) so a silent partition breaks them, and the pool replaces
// them, within seconds.
func dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     keepAliveIdle,
			Interval: keepAliveInterval,
			Count:    keepAliveCount,
		},
		Control: setUserTimeout,
	}
}

// unreachableError is a failure to connect at Open. Its message names the
// address and the cause with the password scrubbed out; it matches
// ErrUnreachable, tokenstore.ErrUnavailable (an outage to wait out: the
// daemon starts and opens the store later) and the cause (a context
// error, a net.Error) with errors.Is and errors.As.
type unreachableError struct {
	msg   string
	cause error
}

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Unwrap() []error {
	return []error{ErrUnreachable, tokenstore.ErrUnavailable, e.cause}
}

// connectError turns the error of the first connection into a message an
// operator can act on. A refusal by the server itself (bad password,
// unknown database) is not "unreachable" and keeps its PgError; a server
// that cannot take connections for now (starting up, shutting down, out
// of connection slots) is, and keeps it too.
func connectError(addr, user, password string, err error) error {
	cause := err
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		cause = ce.Unwrap() // drop pgconn's prefix; we say it better
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) { // the server answered: no password in its words
		if notNow(pgErr) {
			return &unreachableError{msg: fmt.Sprintf("postgres: cannot connect to %s now: %s", addr, pgErr.Error()), cause: pgErr}
		}
		return fmt.Errorf("postgres: connect to %s as %q: %w", addr, user, pgErr)
	}
	// pgconn lists one line per attempt (host, TLS or not); say each once.
	var lines []string
	for _, l := range strings.Split(scrub(cause.Error(), password), "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	detail := strings.Join(lines, "; ")
	return &unreachableError{
		msg:   fmt.Sprintf("postgres: cannot reach %s: %s", addr, detail),
		cause: cause,
	}
}

// address names the server(s) of cfg as host:port, for errors and logs.
func address(cfg *pgx.ConnConfig) string {
	hosts := []string{hostPort(cfg.Host, cfg.Port)}
	for _, f := range cfg.Fallbacks {
		if hp := hostPort(f.Host, f.Port); hp != hosts[len(hosts)-1] {
			hosts = append(hosts, hp)
		}
	}
	return strings.Join(hosts, ",")
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") { // unix socket directory
		return fmt.Sprintf("%s/.s.PGSQL.%d", host, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// scrub removes every occurrence of password from s.
func scrub(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, "xxxxx")
}

// passwordOf digs the password out of a DSN that pgx could not parse, so
// the parse error can be scrubbed of it.
func passwordOf(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				return pw
			}
		}
		return ""
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// Close closes the pool, waiting for connections in use to come back.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.Close()
	})
	return nil
}

// Stats are counters for metrics.
type Stats struct {
	// Steps counts the store's steps (Mint, Exchange, User, ...), each
	// attempt on a connection counted once.
	Steps uint64
	// RoundTrips counts the round trips those steps made to the server.
	RoundTrips uint64
	// Retries counts steps run again after their connection broke
	// before they could commit. No step is ever run again for a
	// serialization failure: they run at READ COMMITTED (see doc.go).
	Retries uint64
	// CommitUnknowns counts writes whose outcome was unknown (see
	// tokenstore.ErrCommitUnknown).
	CommitUnknowns uint64
	// Grouped counts hot steps (Mint, Exchange) that shared their
	// transaction and round trip with others (group commit, see doc.go);
	// GroupAlone counts those run again alone because their group did
	// not commit.
	Grouped, GroupAlone uint64
	// TotalConns, IdleConns and AcquiredConns describe the pool.
	TotalConns, IdleConns, AcquiredConns int32
	// EmptyAcquires counts requests that had to wait for a connection.
	EmptyAcquires int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	ps := s.pool.Stat()
	return Stats{
		Steps:          s.steps.Load(),
		RoundTrips:     s.roundTrips.Load(),
		Retries:        s.connRetries.Load(),
		CommitUnknowns: s.unknowns.Load(),
		Grouped:        s.grouped.Load(),
		GroupAlone:     s.groupAlone.Load(),
		TotalConns:     ps.TotalConns(),
		IdleConns:      ps.IdleConns(),
		AcquiredConns:  ps.AcquiredConns(),
		EmptyAcquires:  ps.EmptyAcquireCount(),
	}
}

// Figures reports Stats for metrics.
func (s *Store) Figures() []tokenstore.Figure {
	st := s.Stats()
	counter := func(name, help string, v uint64) tokenstore.Figure {
		return tokenstore.Figure{Name: name, Help: help, Counter: true, Value: float64(v)}
	}
	gauge := func(name, help string, v int32) tokenstore.Figure {
		return tokenstore.Figure{Name: name, Help: help, Value: float64(v)}
	}
	return []tokenstore.Figure{
		counter("steps_total", "Steps the PostgreSQL store ran, each attempt on a connection counted once.", st.Steps),
		counter("round_trips_total", "Round trips those steps made to PostgreSQL.", st.RoundTrips),
		counter("retries_total", "Steps run again because their connection broke before they could commit.", st.Retries),
		counter("commit_unknown_total", "Writes whose commit was lost with the connection, settled by reading back.", st.CommitUnknowns),
		counter("grouped_steps_total", "Mints and exchanges that shared a transaction and a commit with others (group commit).", st.Grouped),
		counter("group_alone_total", "Grouped steps run again alone because their group did not commit.", st.GroupAlone),
		counter("pool_empty_acquires_total", "Steps that waited for a pooled connection.", uint64(max(st.EmptyAcquires, 0))),
		gauge("pool_conns", "Connections in the pool.", st.TotalConns),
		gauge("pool_idle_conns", "Idle connections in the pool.", st.IdleConns),
		gauge("pool_acquired_conns", "Connections in use.", st.AcquiredConns),
	}
}

// Shared reports true: every daemon on the database sees the same
// records, so the route limits are counted here.
func (s *Store) Shared() bool { return true }

// unavailable marks err as the database being out of reach for now.
func unavailable(err error) error {
	if errors.Is(err, tokenstore.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", tokenstore.ErrUnavailable, err)
}

// serverDown reports an error that says the server cannot be reached or
// is going away: no connection could be made (refused, the database
// starting up or shutting down), the connection failed (class 08), or the
// server was shut down under it (57P01..57P03).
func serverDown(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// notNow reports a refusal of a connection that says to come back later:
// the server starting up, shutting down or in recovery (57P01..57P03),
// out of connection slots (53300), or a connection failure (class 08).
func notNow(e *pgconn.PgError) bool {
	switch e.Code {
	case "57P01", "57P02", "57P03", "53300":
		return true
	}
	return strings.HasPrefix(e.Code, "08")
}
