package bolt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/kvstore"
)

// Interface guards.
var (
	_ tokenstore.Store          = (*Store)(nil)
	_ tokenstore.FigureReporter = (*Store)(nil)
	_ kvstore.Buckets           = (*buckets)(nil)
	_ kvstore.Tx                = (*tx)(nil)
)

// ErrLocked means the store file is held by another process (or another
// Store in this one): bbolt's file lock could not be taken within
// Options.Timeout.
var ErrLocked = errors.New("store file is locked")

// Defaults of Options.
const (
	DefaultTimeout  = time.Second
	DefaultMaxBatch = 256
)

// sweepChunk is how many expired keys one Sweep transaction removes at
// most, so a large sweep never holds the writer for long.
const sweepChunk = 1000

// Options tune a Store. The zero value takes every default.
type Options struct {
	// Timeout is how long Open waits for the file lock before it gives up
	// with ErrLocked. Zero or less: DefaultTimeout.
	Timeout time.Duration
	// NoSync skips the fsync of each commit. A crash may then lose or
	// corrupt recent writes: for tests and benchmarks only.
	NoSync bool
	// MaxBatch caps how many Update calls share one commit. Zero or less:
	// DefaultMaxBatch.
	MaxBatch int
}

// Store is a tokenstore.Store in one bbolt file: kvstore's steps over the
// file's buckets. It is safe for concurrent use.
type Store struct {
	*kvstore.Store
	b *buckets
}

// buckets is the kvstore.Buckets of one bbolt file, with its group-commit
// writer and its health.
type buckets struct {
	db       *bbolt.DB
	path     string
	maxBatch int

	queue    chan *call    // Update calls waiting for the writer
	stop     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the writer has exited

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	health health // the last commit's outcome, for Ping

	commits atomic.Uint64 // bbolt transactions the writer committed
	updates atomic.Uint64 // Update and Sweep calls that committed
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Commits is the number of write transactions committed (one fsync
	// each, unless NoSync).
	Commits uint64
	// Updates is the number of Update (and Sweep) calls those commits
	// carried; Updates/Commits is the mean group size.
	Updates uint64
}

// Open opens (creating if needed) the store file at path. The parent
// directory is created with mode 0700 and the file with 0600. A file held
// by another process gives an error matching ErrLocked after opts.Timeout.
// A file of kvstore's layout 1 (written before the typed Store) is
// migrated to layout 3 first, and one of layout 2 marked (see kvstore.Open).
func Open(path string, opts Options) (*Store, error) {
	b, err := openBuckets(path, opts)
	if err != nil {
		return nil, err
	}
	kv, err := kvstore.Open(context.Background(), b)
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("bolt: %s: %w", path, err)
	}
	return &Store{Store: kv, b: b}, nil
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.b.path }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats { return s.b.stats() }

// openBuckets opens the file as Open does, without the typed store on
// top.
func openBuckets(path string, opts Options) (*buckets, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: create store directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      opts.Timeout,
		NoSync:       opts.NoSync,
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("bolt: %s is in use by another handoff process (a running daemon?): %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(btx *bbolt.Tx) error {
		for _, name := range append([]string{indexBucket}, kvstore.BucketNames...) {
			if _, err := btx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	s := &buckets{
		db:       db,
		path:     path,
		maxBatch: opts.MaxBatch,
		queue:    make(chan *call, opts.MaxBatch),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go s.writer()
	return s, nil
}

// Figures reports the writer's counters for metrics: commits (each
// synced to disk) and the Update calls they carried.
func (s *Store) Figures() []tokenstore.Figure {
	st := s.b.stats()
	return []tokenstore.Figure{
		{Name: "commits_total", Help: "Write transactions the bolt store committed, each synced to disk.", Counter: true, Value: float64(st.Commits)},
		{Name: "committed_steps_total", Help: "Write steps those commits carried (group commit); over handoff_store_commits_total, the mean group size.", Counter: true, Value: float64(st.Updates)},
	}
}

// stats returns the writer's counters.
func (s *buckets) stats() Stats {
	return Stats{Commits: s.commits.Load(), Updates: s.updates.Load()}
}

// View runs fn in a read-only bbolt transaction. Readers run concurrently
// with each other and with the writer.
func (s *buckets) View(ctx context.Context, fn func(kvstore.Tx) error) error {
	if s.closed.Load() {
		return tokenstore.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(func(btx *bbolt.Tx) error { return fn(&tx{btx: btx}) })
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return tokenstore.ErrClosed
	}
	return err
}

// Update runs fn in a read-write transaction, usually shared with other
// concurrent Updates, and returns once that transaction has committed
// durably (or fn's error, which discards fn's writes). A ctx that ends
// before the writer takes the call returns ctx.Err() and fn never runs.
// fn runs on the writer goroutine: it must not call Update itself.
func (s *buckets) Update(ctx context.Context, fn func(kvstore.Tx) error) error {
	return s.submit(ctx, func(btx *bbolt.Tx) error { return fn(&tx{btx: btx}) })
}

// Sweep deletes the keys (all, when limit <= 0, else until limit of
// those counted accepts went) whose expiry is before now. It walks the
// expiry index from its oldest entry and stops at the first one not yet
// due, in transactions of at most 1000 keys.
func (s *buckets) Sweep(ctx context.Context, now time.Time, limit int, counted func(bucket string) bool) (int, error) {
	due := encodeExpire(now)
	if limit <= 0 {
		limit = math.MaxInt
	}
	total := 0
	for total < limit {
		var swept, taken int
		err := s.submit(ctx, func(btx *bbolt.Tx) (err error) {
			swept, taken, err = sweep(btx, due, limit-total, sweepChunk, counted)
			return err
		})
		if err != nil {
			return total, err
		}
		total += swept
		if taken < sweepChunk && total < limit {
			break // the index has nothing more that is due
		}
	}
	return total, nil
}

// Close stops the writer (calls still queued get tokenstore.ErrClosed) and
// closes the file. Calling it again returns the first call's result.
func (s *buckets) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.loopDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
