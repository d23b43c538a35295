package bolt

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/kvstore"
)

// probeBucket holds the one key Ping rewrites while writes fail. Like
// indexBucket its name starts with a 0 byte, which no caller's bucket has.
const probeBucket = "\x00probe"

// probeInterval is how often Ping tries a write while writes fail; the
// pings in between get the last probe's answer, so a probe storm never
// becomes a write storm.
const probeInterval = time.Second

// probeSize is how much free space Ping's probe asks of the file system
// beside the store: 16 pages, room for any one small commit. A probe of
// bbolt alone would not do: a tiny commit fits in the pages bbolt already
// owns and succeeds on a disk that is still full.
const probeSize = 64 << 10

// health is what the writer knows about the disk: whether its last commit
// failed, and with what. A commit that succeeds clears it.
type health struct {
	failing atomic.Bool // the fast path: false while commits succeed

	mu     sync.Mutex
	err    error     // the last failed commit's error
	probed time.Time // when Ping last tried a write
}

// writeFailed records err, a failed begin or commit of a write
// transaction, and returns it as the caller should see it: ErrClosed for a
// closed file, otherwise an error matching tokenstore.ErrUnavailable that
// keeps err (ENOSPC, EIO...) visible.
//
// Every failed commit is ErrUnavailable, not only the errnos of a full or
// failing disk: bbolt rolls a failed commit back, so nothing of it counts
// and trying again later is right, and bbolt flattens the errno of a failed
// file grow into text, so matching errnos alone would miss those.
func (s *buckets) writeFailed(op string, err error) error {
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return tokenstore.ErrClosed
	}
	err = fmt.Errorf("bolt: %s: %w: %w", op, tokenstore.ErrUnavailable, err)
	s.health.mu.Lock()
	s.health.err = err
	s.health.mu.Unlock()
	s.health.failing.Store(true)
	return err
}

// wroteOK records a commit that succeeded.
func (s *buckets) wroteOK() {
	if !s.health.failing.Load() {
		return
	}
	s.health.mu.Lock()
	s.health.err = nil
	s.health.failing.Store(false)
	s.health.mu.Unlock()
}

// Ping reports whether the store can serve writes, without an fsync while
// all is well. It returns ErrClosed once closed. While commits succeed it
// runs an empty read transaction. After a commit failed (the disk full or
// failing), it probes, at most once per probeInterval (the pings in
// between get the last answer), so the store is seen to recover when space
// returns even with no traffic to try it: it writes and syncs probeSize
// bytes to a file beside the store (removed again), then commits a tiny
// write to the store itself.
func (s *buckets) Ping(ctx context.Context) error {
	if !s.health.failing.Load() {
		return s.View(ctx, func(kvstore.Tx) error { return nil })
	}
	s.health.mu.Lock()
	if time.Since(s.health.probed) < probeInterval {
		err := s.health.err
		s.health.mu.Unlock()
		return err // nil: a commit succeeded since
	}
	s.health.probed = time.Now()
	s.health.mu.Unlock()
	if err := s.probeDisk(); err != nil {
		return s.writeFailed("probe", err)
	}
	return s.submit(ctx, probe)
}

// probeDisk writes and syncs probeSize bytes to a new file beside the
// store and removes it: the disk has room and takes writes again.
func (s *buckets) probeDisk() error {
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	return cmp.Or(err, f.Close())
}

// probe rewrites the probe key: the smallest write that still commits a
// changed page.
func probe(btx *bbolt.Tx) error {
	b, err := btx.CreateBucketIfNotExists([]byte(probeBucket))
	if err != nil {
		return err
	}
	return b.Put([]byte("probe"), binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())))
}
