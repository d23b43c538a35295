package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/kvstore"
)

// The buckets the tests write. The Buckets contract creates buckets on
// their first write, so they need not be among kvstore.BucketNames.
const (
	bucketA     = "storetest_a"
	bucketB     = "storetest_b"
	bucketNever = "storetest_never"
)

var errBoom = errors.New("kvtest: boom")

// update runs fn in an Update that must succeed.
func update(t *testing.T, st kvstore.Buckets, fn func(kvstore.Tx) error) {
	t.Helper()
	must(t, "Update", st.Update(context.Background(), fn))
}

// get reads bucket/key in a View and returns a copy of the value.
func get(t *testing.T, st kvstore.Buckets, bucket string, key []byte) ([]byte, error) {
	t.Helper()
	var out []byte
	err := st.View(context.Background(), func(tx kvstore.Tx) error {
		v, err := tx.Get(bucket, key)
		out = bytes.Clone(v)
		return err
	})
	return out, err
}

// wantValue fails t unless bucket/key holds want.
func wantValue(t *testing.T, st kvstore.Buckets, bucket, key, want string) {
	t.Helper()
	v, err := get(t, st, bucket, []byte(key))
	if err != nil {
		t.Fatalf("Get(%s, %q): %v, want %q", bucket, key, err, want)
	}
	if string(v) != want {
		t.Fatalf("Get(%s, %q) = %q, want %q", bucket, key, v, want)
	}
}

// wantAbsent fails t unless bucket/key is absent.
func wantAbsent(t *testing.T, st kvstore.Buckets, bucket, key string) {
	t.Helper()
	v, err := get(t, st, bucket, []byte(key))
	if !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Get(%s, %q) = %q, %v; want ErrNotFound", bucket, key, v, err)
	}
}

func testGetAbsent(t *testing.T, s *suite) {
	st := s.store(t)
	wantAbsent(t, st, bucketNever, "k")
	update(t, st, func(tx kvstore.Tx) error { return tx.Put(bucketA, []byte("k"), []byte("v"), time.Time{}) })
	wantAbsent(t, st, bucketA, "other")
	wantAbsent(t, st, bucketA, "k\x00")
	wantAbsent(t, st, bucketB, "k")
	err := st.Update(context.Background(), func(tx kvstore.Tx) error {
		_, err := tx.Take(bucketNever, []byte("k"))
		return err
	})
	wantIs(t, "Take in a bucket never written", err, tokenstore.ErrNotFound)
}

func testPutGet(t *testing.T, s *suite) {
	st := s.store(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	update(t, st, func(tx kvstore.Tx) error {
		for _, kv := range []struct{ k, v []byte }{
			{[]byte("k"), []byte("v1")},
			{[]byte("bin\x00\xff"), []byte{0, 1, 2, 0xff}},
			{[]byte("empty"), nil},
			{[]byte("big"), big},
		} {
			if err := tx.Put(bucketA, kv.k, kv.v, time.Time{}); err != nil {
				return err
			}
		}
		v, err := tx.Get(bucketA, []byte("k"))
		if err != nil || string(v) != "v1" {
			return fmt.Errorf("Get in the writing transaction = %q, %v", v, err)
		}
		return nil
	})
	wantValue(t, st, bucketA, "k", "v1")
	wantValue(t, st, bucketA, "bin\x00\xff", "\x00\x01\x02\xff")
	wantValue(t, st, bucketA, "empty", "")
	wantValue(t, st, bucketA, "big", string(big))
	update(t, st, func(tx kvstore.Tx) error { return tx.Put(bucketA, []byte("k"), []byte("v2"), time.Time{}) })
	wantValue(t, st, bucketA, "k", "v2")
}

func testInsert(t *testing.T, s *suite) {
	st := s.store(t)
	update(t, st, func(tx kvstore.Tx) error { return tx.Insert(bucketA, []byte("k"), []byte("first"), time.Time{}) })
	var inTx error
	err := st.Update(context.Background(), func(tx kvstore.Tx) error {
		inTx = tx.Insert(bucketA, []byte("k"), []byte("second"), time.Time{})
		return nil
	})
	must(t, "Update", err)
	wantIs(t, "Insert of a present key", inTx, tokenstore.ErrExists)
	wantValue(t, st, bucketA, "k", "first")

	// The same key in another bucket is another key.
	update(t, st, func(tx kvstore.Tx) error { return tx.Insert(bucketB, []byte("k"), []byte("b"), time.Time{}) })
	wantValue(t, st, bucketB, "k", "b")

	// A key inserted earlier in the same transaction is present.
	err = st.Update(context.Background(), func(tx kvstore.Tx) error {
		if err := tx.Insert(bucketA, []byte("fresh"), []byte("1"), time.Time{}); err != nil {
			return err
		}
		return tx.Insert(bucketA, []byte("fresh"), []byte("2"), time.Time{})
	})
	wantIs(t, "second Insert in one transaction", err, tokenstore.ErrExists)
	wantAbsent(t, st, bucketA, "fresh")

	// A deleted key may be inserted again.
	update(t, st, func(tx kvstore.Tx) error { return tx.Delete(bucketA, []byte("k")) })
	update(t, st, func(tx kvstore.Tx) error { return tx.Insert(bucketA, []byte("k"), []byte("again"), time.Time{}) })
	wantValue(t, st, bucketA, "k", "again")
}

func testTake(t *testing.T, s *suite) {
	st := s.store(t)
	update(t, st, func(tx kvstore.Tx) error { return tx.Put(bucketA, []byte("k"), []byte("once"), time.Time{}) })
	var got []byte
	update(t, st, func(tx kvstore.Tx) error {
		v, err := tx.Take(bucketA, []byte("k"))
		if err != nil {
			return err
		}
		// The value stays readable for the rest of the transaction.
		if err := tx.Put(bucketA, []byte("other"), []byte("x"), time.Time{}); err != nil {
			return err
		}
		got = bytes.Clone(v)
		if _, err := tx.Get(bucketA, []byte("k")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("Get after Take in the same transaction: %v, want ErrNotFound", err)
		}
		return nil
	})
	if string(got) != "once" {
		t.Fatalf("Take = %q, want %q", got, "once")
	}
	wantAbsent(t, st, bucketA, "k")
	err := st.Update(context.Background(), func(tx kvstore.Tx) error {
		_, err := tx.Take(bucketA, []byte("k"))
		return err
	})
	wantIs(t, "second Take", err, tokenstore.ErrNotFound)
}

func testDelete(t *testing.T, s *suite) {
	st := s.store(t)
	update(t, st, func(tx kvstore.Tx) error {
		if err := tx.Put(bucketA, []byte("k"), []byte("v"), time.Time{}); err != nil {
			return err
		}
		return tx.Put(bucketA, []byte("keep"), []byte("v"), time.Time{})
	})
	update(t, st, func(tx kvstore.Tx) error { return tx.Delete(bucketA, []byte("k")) })
	wantAbsent(t, st, bucketA, "k")
	wantValue(t, st, bucketA, "keep", "v")
	update(t, st, func(tx kvstore.Tx) error { return tx.Delete(bucketA, []byte("k")) })
	update(t, st, func(tx kvstore.Tx) error { return tx.Delete(bucketNever, []byte("k")) })
}

// scanKeys are stored in a shuffled order; their byte order is this one.
var scanKeys = []string{
	"a", "a\x00", "a\x001", "a\x002", "a\x00\xff", "a\x01", "ab", "b", "b\x00x", "\xff", "\xff\xff",
}

func putScanKeys(t *testing.T, st kvstore.Buckets) {
	t.Helper()
	shuffled := slices.Clone(scanKeys)
	slices.Reverse(shuffled)
	shuffled[2], shuffled[7] = shuffled[7], shuffled[2]
	update(t, st, func(tx kvstore.Tx) error {
		for _, k := range shuffled {
			if err := tx.Put(bucketA, []byte(k), []byte("v:"+k), time.Time{}); err != nil {
				return err
			}
		}
		// A neighbouring bucket must not leak into the scan.
		return tx.Put(bucketB, []byte("a\x003"), []byte("other bucket"), time.Time{})
	})
}

func testScan(t *testing.T, s *suite) {
	st := s.store(t)
	putScanKeys(t, st)
	for _, tc := range []struct {
		name          string
		prefix, after []byte
		want          []string
	}{
		{"all", nil, nil, scanKeys},
		{"empty prefix", []byte{}, nil, scanKeys},
		{"prefix", []byte("a\x00"), nil, []string{"a\x00", "a\x001", "a\x002", "a\x00\xff"}},
		{"prefix no match", []byte("c"), nil, nil},
		{"prefix high bytes", []byte("\xff"), nil, []string{"\xff", "\xff\xff"}},
		{"after a key", []byte("a\x00"), []byte("a\x001"), []string{"a\x002", "a\x00\xff"}},
		{"after the prefix itself", []byte("a\x00"), []byte("a\x00"), []string{"a\x001", "a\x002", "a\x00\xff"}},
		{"after an absent key", []byte("a\x00"), []byte("a\x0015"), []string{"a\x002", "a\x00\xff"}},
		{"after before the prefix", []byte("a\x00"), []byte("a"), []string{"a\x00", "a\x001", "a\x002", "a\x00\xff"}},
		{"after past the prefix", []byte("a\x00"), []byte("b"), nil},
		{"after the last key", []byte("a\x00"), []byte("a\x00\xff"), nil},
		{"after without prefix", nil, []byte("ab"), []string{"b", "b\x00x", "\xff", "\xff\xff"}},
		{"after an empty key", nil, []byte{}, scanKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := st.View(context.Background(), func(tx kvstore.Tx) error {
				got = got[:0]
				return tx.Scan(bucketA, tc.prefix, tc.after, func(k, v []byte) bool {
					if string(v) != "v:"+string(k) {
						t.Errorf("value of %q = %q", k, v)
					}
					got = append(got, string(k))
					return true
				})
			})
			must(t, "Scan", err)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Scan(prefix %q, after %q) = %q, want %q", tc.prefix, tc.after, got, tc.want)
			}
		})
	}
}

func testScanStop(t *testing.T, s *suite) {
	st := s.store(t)
	putScanKeys(t, st)
	var got []string
	err := st.View(context.Background(), func(tx kvstore.Tx) error {
		got = got[:0]
		return tx.Scan(bucketA, nil, nil, func(k, _ []byte) bool {
			got = append(got, string(k))
			return len(got) < 3
		})
	})
	must(t, "Scan", err)
	if !slices.Equal(got, scanKeys[:3]) {
		t.Fatalf("Scan stopped after 3 = %q, want %q", got, scanKeys[:3])
	}
	calls := 0
	err = st.View(context.Background(), func(tx kvstore.Tx) error {
		calls = 0
		return tx.Scan(bucketNever, nil, nil, func(_, _ []byte) bool { calls++; return true })
	})
	must(t, "Scan of a bucket never written", err)
	if calls != 0 {
		t.Fatalf("Scan of a bucket never written found %d keys", calls)
	}
}

func testUpdateSeesOwnWrites(t *testing.T, s *suite) {
	st := s.store(t)
	update(t, st, func(tx kvstore.Tx) error {
		if err := tx.Put(bucketA, []byte("x1"), []byte("1"), time.Time{}); err != nil {
			return err
		}
		if err := tx.Put(bucketA, []byte("x2"), []byte("2"), time.Time{}); err != nil {
			return err
		}
		if err := tx.Delete(bucketA, []byte("x1")); err != nil {
			return err
		}
		if _, err := tx.Get(bucketA, []byte("x1")); !errors.Is(err, tokenstore.ErrNotFound) {
			return fmt.Errorf("Get of a key deleted in this transaction: %v, want ErrNotFound", err)
		}
		var keys []string
		if err := tx.Scan(bucketA, []byte("x"), nil, func(k, _ []byte) bool {
			keys = append(keys, string(k))
			return true
		}); err != nil {
			return err
		}
		if !slices.Equal(keys, []string{"x2"}) {
			return fmt.Errorf("Scan in the writing transaction = %q, want [x2]", keys)
		}
		return nil
	})
	wantAbsent(t, st, bucketA, "x1")
	wantValue(t, st, bucketA, "x2", "2")
}

func testUpdateRollback(t *testing.T, s *suite) {
	st := s.store(t)
	update(t, st, func(tx kvstore.Tx) error { return tx.Put(bucketA, []byte("old"), []byte("kept"), time.Time{}) })
	err := st.Update(context.Background(), func(tx kvstore.Tx) error {
		if err := tx.Put(bucketA, []byte("new"), []byte("v"), time.Now().Add(-time.Hour)); err != nil {
			return err
		}
		if err := tx.Put(bucketA, []byte("old"), []byte("changed"), time.Time{}); err != nil {
			return err
		}
		if err := tx.Delete(bucketB, []byte("none")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	wantIs(t, "Update whose fn fails", err, errBoom)
	wantAbsent(t, st, bucketA, "new")
	wantValue(t, st, bucketA, "old", "kept")
	// The rolled-back key left nothing in the expiry index either.
	n, err := st.Sweep(context.Background(), time.Now(), 0, nil)
	must(t, "Sweep", err)
	if n != 0 {
		t.Fatalf("Sweep after a rolled-back Put removed %d keys, want 0", n)
	}

	// An Insert conflict returned by fn rolls back fn's other writes.
	err = st.Update(context.Background(), func(tx kvstore.Tx) error {
		if err := tx.Put(bucketA, []byte("side"), []byte("effect"), time.Time{}); err != nil {
			return err
		}
		return tx.Insert(bucketA, []byte("old"), []byte("dup"), time.Time{})
	})
	wantIs(t, "Update with an Insert conflict", err, tokenstore.ErrExists)
	wantAbsent(t, st, bucketA, "side")
}

func testViewReadOnly(t *testing.T, s *suite) {
	st := s.store(t)
	err := st.View(context.Background(), func(tx kvstore.Tx) error {
		return tx.Put(bucketA, []byte("k"), []byte("v"), time.Time{})
	})
	if err == nil {
		t.Fatal("Put in a View succeeded")
	}
	wantAbsent(t, st, bucketA, "k")
}

func testCancelledContext(t *testing.T, s *suite) {
	st := s.store(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := st.Update(ctx, func(tx kvstore.Tx) error {
		return tx.Put(bucketA, []byte("k"), []byte("v"), time.Time{})
	})
	wantIs(t, "Update with a cancelled context", err, context.Canceled)
	wantAbsent(t, st, bucketA, "k")
	err = st.View(ctx, func(tx kvstore.Tx) error { return nil })
	wantIs(t, "View with a cancelled context", err, context.Canceled)
}

// putExpiring stores key in bucket with expire.
func putExpiring(t *testing.T, st kvstore.Buckets, bucket, key string, expire time.Time) {
	t.Helper()
	update(t, st, func(tx kvstore.Tx) error {
		return tx.Put(bucket, []byte(key), []byte("v:"+key), expire)
	})
}

func sweep(t *testing.T, st kvstore.Buckets, now time.Time, limit, want int) {
	t.Helper()
	n, err := st.Sweep(context.Background(), now, limit, nil)
	must(t, "Sweep", err)
	if n != want {
		t.Fatalf("Sweep(now %s, limit %d) = %d, want %d", now.Format(time.RFC3339), limit, n, want)
	}
}

func testSweep(t *testing.T, s *suite) {
	st := s.store(t)
	now := startTime()
	putExpiring(t, st, bucketA, "past-2s", now.Add(-2*time.Second))
	putExpiring(t, st, bucketA, "past-1s", now.Add(-time.Second))
	putExpiring(t, st, bucketA, "bin\x00\xff", now.Add(-time.Second))
	putExpiring(t, st, bucketA, "at-now", now)
	putExpiring(t, st, bucketA, "future", now.Add(time.Hour))
	putExpiring(t, st, bucketA, "forever", time.Time{})
	update(t, st, func(tx kvstore.Tx) error {
		return tx.Insert(bucketA, []byte("inserted-past"), []byte("v"), now.Add(-time.Minute))
	})

	sweep(t, st, now, 0, 4)
	for _, k := range []string{"past-2s", "past-1s", "bin\x00\xff", "inserted-past"} {
		wantAbsent(t, st, bucketA, k)
	}
	// Expiry is "before now": a key expiring at exactly now stays.
	for _, k := range []string{"at-now", "future", "forever"} {
		wantValue(t, st, bucketA, k, "v:"+k)
	}
	sweep(t, st, now, 0, 0)
	sweep(t, st, now.Add(time.Second), 0, 1)
	wantAbsent(t, st, bucketA, "at-now")
	sweep(t, st, now.Add(100*365*24*time.Hour), 0, 1)
	wantAbsent(t, st, bucketA, "future")
	wantValue(t, st, bucketA, "forever", "v:forever")
}

func testSweepLimit(t *testing.T, s *suite) {
	st := s.store(t)
	now := startTime()
	for i := range 5 {
		putExpiring(t, st, bucketA, fmt.Sprintf("k%d", i), now.Add(-time.Duration(i+1)*time.Second))
	}
	putExpiring(t, st, bucketA, "live", now.Add(time.Hour))
	sweep(t, st, now, 2, 2)
	// The oldest go first.
	wantAbsent(t, st, bucketA, "k4")
	wantAbsent(t, st, bucketA, "k3")
	wantValue(t, st, bucketA, "k0", "v:k0")
	sweep(t, st, now, 10, 3)
	sweep(t, st, now, 10, 0)
	wantValue(t, st, bucketA, "live", "v:live")
}

func testSweepOverwrite(t *testing.T, s *suite) {
	st := s.store(t)
	now := startTime()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)

	putExpiring(t, st, bucketA, "extended", past)
	putExpiring(t, st, bucketA, "extended", future)

	putExpiring(t, st, bucketA, "made-permanent", past)
	putExpiring(t, st, bucketA, "made-permanent", time.Time{})

	putExpiring(t, st, bucketA, "shortened", future)
	putExpiring(t, st, bucketA, "shortened", past)

	putExpiring(t, st, bucketA, "deleted", past)
	update(t, st, func(tx kvstore.Tx) error { return tx.Delete(bucketA, []byte("deleted")) })

	putExpiring(t, st, bucketA, "taken-reinserted", past)
	update(t, st, func(tx kvstore.Tx) error {
		if _, err := tx.Take(bucketA, []byte("taken-reinserted")); err != nil {
			return err
		}
		return tx.Insert(bucketA, []byte("taken-reinserted"), []byte("v:taken-reinserted"), time.Time{})
	})

	// Taken, then written again with a later expiry in a later
	// transaction: an entry Take left must not delete it.
	putExpiring(t, st, bucketA, "taken-later", past)
	update(t, st, func(tx kvstore.Tx) error {
		_, err := tx.Take(bucketA, []byte("taken-later"))
		return err
	})
	putExpiring(t, st, bucketA, "taken-later", future)

	// Overwritten twice in one transaction: only the last expiry counts.
	update(t, st, func(tx kvstore.Tx) error {
		if err := tx.Put(bucketA, []byte("twice"), []byte("v:twice"), past); err != nil {
			return err
		}
		return tx.Put(bucketA, []byte("twice"), []byte("v:twice"), future)
	})

	sweep(t, st, now, 0, 1)
	wantAbsent(t, st, bucketA, "shortened")
	wantAbsent(t, st, bucketA, "deleted")
	for _, k := range []string{"extended", "made-permanent", "taken-reinserted", "taken-later", "twice"} {
		wantValue(t, st, bucketA, k, "v:"+k)
	}
	sweep(t, st, future.Add(time.Second), 0, 3) // extended, taken-later, twice
	wantValue(t, st, bucketA, "made-permanent", "v:made-permanent")
	wantValue(t, st, bucketA, "taken-reinserted", "v:taken-reinserted")
}

func testSweepBuckets(t *testing.T, s *suite) {
	st := s.store(t)
	now := startTime()
	putExpiring(t, st, bucketA, "k", now.Add(-time.Minute))
	putExpiring(t, st, bucketB, "k", time.Time{})
	putExpiring(t, st, bucketB, "k2", now.Add(time.Minute))
	putExpiring(t, st, bucketA, "k2", now.Add(-time.Minute))
	sweep(t, st, now, 0, 2)
	wantAbsent(t, st, bucketA, "k")
	wantAbsent(t, st, bucketA, "k2")
	wantValue(t, st, bucketB, "k", "v:k")
	wantValue(t, st, bucketB, "k2", "v:k2")
}

func testClosed(t *testing.T, s *suite) {
	st := s.open(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = st.Close()
		}
	})
	update(t, st, func(tx kvstore.Tx) error { return tx.Put(bucketA, []byte("k"), []byte("v"), time.Time{}) })
	closed = true
	must(t, "Close", st.Close())
	ctx := context.Background()
	err := st.Update(ctx, func(tx kvstore.Tx) error { return nil })
	wantIs(t, "Update after Close", err, tokenstore.ErrClosed)
	err = st.View(ctx, func(tx kvstore.Tx) error { return nil })
	wantIs(t, "View after Close", err, tokenstore.ErrClosed)
	_, err = st.Sweep(ctx, time.Now(), 0, nil)
	wantIs(t, "Sweep after Close", err, tokenstore.ErrClosed)
}

func testSweepCounted(t *testing.T, s *suite) {
	st := s.store(t)
	now := startTime()
	for i := range 3 {
		putExpiring(t, st, bucketA, fmt.Sprintf("a%d", i), now.Add(-time.Duration(10-2*i)*time.Second))
		putExpiring(t, st, bucketB, fmt.Sprintf("b%d", i), now.Add(-time.Duration(9-2*i)*time.Second))
	}
	onlyA := func(bucket string) bool { return bucket == bucketA }
	// Oldest first: a0 b0 a1 b1 a2 b2. Two of A's go, and B's keys
	// between them, uncounted.
	n, err := st.Sweep(context.Background(), now, 2, onlyA)
	must(t, "Sweep", err)
	if n != 2 {
		t.Fatalf("Sweep(limit 2, counting A) = %d, want 2", n)
	}
	for _, k := range []string{"a0", "b0", "a1"} {
		wantAbsent(t, st, map[byte]string{'a': bucketA, 'b': bucketB}[k[0]], k)
	}
	wantValue(t, st, bucketA, "a2", "v:a2")
	n, err = st.Sweep(context.Background(), now, 0, onlyA)
	must(t, "Sweep", err)
	if n != 1 {
		t.Fatalf("Sweep(no limit, counting A) = %d, want 1", n)
	}
	for _, k := range []string{"b1", "b2"} {
		wantAbsent(t, st, bucketB, k)
	}
}
