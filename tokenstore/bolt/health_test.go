package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/kvstore"
	"github.com/handoffd/handoff/tokenstore/storetest"
)

// TestDiskFull is the attack of a full disk: writes fail with an error
// matching tokenstore.ErrUnavailable that names ENOSPC, the writer is not
// wedged (every caller gets an answer), Ping reports it, and once space
// returns the store heals by itself, with every committed value intact and
// a consistent file.
func TestDiskFull(t *testing.T) {
	dir := storetest.MountTmpfs(t, 1<<20)
	path := filepath.Join(dir, "handoff.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := st.b
	ctx := context.Background()
	put := func(i int) error {
		return s.Update(ctx, func(tx kvstore.Tx) error {
			return tx.Put("kv", fmt.Appendf(nil, "k%05d", i), make([]byte, 2000), time.Time{})
		})
	}
	for i := range 10 {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	storetest.FillDisk(t, filepath.Join(dir, "filler"))

	// Values go in until the pages bbolt already had run out.
	committed := 10
	for ; committed < 1000; committed++ {
		if err = put(committed); err != nil {
			break
		}
	}
	if !errors.Is(err, tokenstore.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ErrUnavailable with ENOSPC", err)
	}
	// Many writers at once all get an answer, and the same one.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- put(10000 + i)
		}()
	}
	waitOrFail(t, &wg, 10*time.Second, "writers on a full disk")
	close(errs)
	for err := range errs {
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Fatalf("concurrent write on a full disk: %v", err)
		}
	}
	if err := st.Ping(ctx); !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("Ping on a full disk: %v", err)
	}
	// Reads still work.
	if err := s.View(ctx, func(tx kvstore.Tx) error { _, err := tx.Get("kv", []byte("k00000")); return err }); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping after space returned: %v", s.Ping(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := put(committed); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	committed++
	checkStore(t, s.db, committed)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	checkStore(t, s2.b.db, committed)
}

// checkStore runs bbolt's consistency check and counts the kv values
// 0..n-1 (and the concurrent writers' none).
func checkStore(t *testing.T, db *bbolt.DB, n int) {
	t.Helper()
	err := db.View(func(btx *bbolt.Tx) error {
		for err := range btx.Check() {
			return fmt.Errorf("check: %w", err)
		}
		b := btx.Bucket([]byte("kv"))
		for i := range n {
			if b.Get(fmt.Appendf(nil, "k%05d", i)) == nil {
				return fmt.Errorf("committed value k%05d lost", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: no answer after %v (writer wedged)", what, d)
	}
}

// TestWriteFailedMapping: every way a commit fails is ErrUnavailable with
// its cause kept, including the failing disk (EIO) that no test here can
// produce for real (device-mapper's error target is not available), and
// the failed file grow whose errno bbolt flattens into text. A closed file
// is ErrClosed. A failure puts Ping in the probing state; a commit that
// succeeds takes it out.
func TestWriteFailedMapping(t *testing.T) {
	eio := &os.PathError{Op: "write", Path: "/data/handoff.db", Err: syscall.EIO}
	for _, tc := range []struct {
		name    string
		err     error
		want    error
		failing bool
	}{
		{"enospc", &os.PathError{Op: "write", Path: "/data/handoff.db", Err: syscall.ENOSPC}, syscall.ENOSPC, true},
		{"eio", eio, syscall.EIO, true},
		{"edquot", fmt.Errorf("sync: %w", syscall.EDQUOT), syscall.EDQUOT, true},
		{"erofs", &os.PathError{Op: "write", Path: "/data/handoff.db", Err: syscall.EROFS}, syscall.EROFS, true},
		{"grow", errors.New("file resize error: no space left on device"), tokenstore.ErrUnavailable, true},
		{"closed", bbolt.ErrDatabaseNotOpen, tokenstore.ErrClosed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openBTB(t, Options{})
			err := s.writeFailed("commit", tc.err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("writeFailed(%v) = %v, want it to match %v", tc.err, err, tc.want)
			}
			if tc.failing != errors.Is(err, tokenstore.ErrUnavailable) || s.health.failing.Load() != tc.failing {
				t.Fatalf("writeFailed(%v) = %v, failing %v; want failing %v", tc.err, err, s.health.failing.Load(), tc.failing)
			}
			if !tc.failing {
				return
			}
			// Ping probes with a write; the disk is fine, so it heals.
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			if s.health.failing.Load() {
				t.Fatal("a probe that committed left the store failing")
			}
		})
	}
}

// TestPingProbesOnlyWhileFailing: a healthy store's Ping commits nothing
// (no fsync per readiness probe); a failing one's probes at most once per
// probeInterval, however often it is asked.
func TestPingProbesOnlyWhileFailing(t *testing.T) {
	s := openBTB(t, Options{})
	ctx := context.Background()
	before := s.stats().Commits
	for range 100 {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.stats().Commits - before; n != 0 {
		t.Fatalf("healthy Ping committed %d times", n)
	}
	// Fail as a disk would, then ask many times within one interval:
	// one probe, the rest answered from memory.
	want := s.writeFailed("commit", syscall.EIO)
	s.health.mu.Lock()
	s.health.probed = time.Now()
	s.health.mu.Unlock()
	for range 100 {
		if err := s.Ping(ctx); !errors.Is(err, syscall.EIO) || err.Error() != want.Error() {
			t.Fatalf("Ping within the interval: %v, want %v", err, want)
		}
	}
	if n := s.stats().Commits - before; n != 0 {
		t.Fatalf("Ping within the interval committed %d times", n)
	}
}
