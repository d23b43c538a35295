package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
)

// indexBucket is the expiry index. Its name starts with a 0 byte, which no
// bucket a caller may use contains.
const indexBucket = "\x00expiry"

// indexFill is the expiry index's split threshold. Its keys start with
// their expiry, so each kind of record (tokens, sessions, limits) appends
// near the end of a region of its own, where bbolt's default of half-full
// pages would leave every page half empty.
const indexFill = 0.9

// index returns the expiry index of btx, ready to write.
func index(btx *bbolt.Tx) *bbolt.Bucket {
	idx := btx.Bucket([]byte(indexBucket))
	idx.FillPercent = indexFill
	return idx
}

// headerLen is the size of the expiry header in front of every value.
const headerLen = 8

// errBadValue means a stored value is too short to carry its header.
var errBadValue = errors.New("stored value has no expiry header")

// tx is a kvstore.Tx over a bbolt transaction.
type tx struct {
	btx *bbolt.Tx
}

// encodeExpire is t as the header and index form: big-endian unix
// nanoseconds, 0 for the zero time. Instants outside what an int64 of
// nanoseconds holds are clamped; one at or before 1970 becomes 1, so it
// still sorts first and is never mistaken for "no expiry".
func encodeExpire(t time.Time) uint64 {
	switch {
	case t.IsZero():
		return 0
	case t.Unix() < 0:
		return 1
	case t.Unix() >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return max(1, uint64(t.UnixNano()))
}

// indexKey is the index entry of key in bucket expiring at e.
func indexKey(e uint64, bucket string, key []byte) []byte {
	k := make([]byte, 0, headerLen+len(bucket)+1+len(key))
	k = binary.BigEndian.AppendUint64(k, e)
	k = append(k, bucket...)
	k = append(k, 0)
	return append(k, key...)
}

// splitIndexKey is the inverse of indexKey.
func splitIndexKey(k []byte) (e uint64, bucket, key []byte, ok bool) {
	if len(k) < headerLen+1 {
		return 0, nil, nil, false
	}
	i := bytes.IndexByte(k[headerLen:], 0)
	if i < 0 {
		return 0, nil, nil, false
	}
	return binary.BigEndian.Uint64(k), k[headerLen : headerLen+i], k[headerLen+i+1:], true
}

func checkBucket(name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("bolt: invalid bucket name %q", name)
	}
	return nil
}

// bucket returns the named bucket, or nil when it does not exist yet.
func (t *tx) bucket(name string) (*bbolt.Bucket, error) {
	if err := checkBucket(name); err != nil {
		return nil, err
	}
	return t.btx.Bucket([]byte(name)), nil
}

// writeBucket returns the named bucket for a write, or nil when it does
// not exist and create is false; with create it makes the bucket on its
// first write.
func (t *tx) writeBucket(name string, create bool) (*bbolt.Bucket, error) {
	if err := checkBucket(name); err != nil {
		return nil, err
	}
	if !t.btx.Writable() {
		return nil, fmt.Errorf("bolt: write to %s in a read-only transaction: %w", name, bbolt.ErrTxNotWritable)
	}
	if b := t.btx.Bucket([]byte(name)); b != nil || !create {
		return b, nil
	}
	b, err := t.btx.CreateBucket([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("bolt: create bucket %s: %w", name, err)
	}
	return b, nil
}

// Get returns the value under key, or tokenstore.ErrNotFound.
func (t *tx) Get(bucket string, key []byte) ([]byte, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, tokenstore.ErrNotFound
	}
	v := b.Get(key)
	if v == nil {
		return nil, tokenstore.ErrNotFound
	}
	if len(v) < headerLen {
		return nil, fmt.Errorf("bolt: get %s: %w", bucket, errBadValue)
	}
	return v[headerLen:], nil
}

// Put stores value under key and moves its expiry index entry.
func (t *tx) Put(bucket string, key, value []byte, expire time.Time) error {
	b, err := t.writeBucket(bucket, true)
	if err != nil {
		return err
	}
	if err := t.put(b, bucket, key, value, expire, b.Get(key)); err != nil {
		return fmt.Errorf("bolt: put %s: %w", bucket, err)
	}
	return nil
}

// Insert is Put for an absent key; a present one gives tokenstore.ErrExists.
func (t *tx) Insert(bucket string, key, value []byte, expire time.Time) error {
	b, err := t.writeBucket(bucket, true)
	if err != nil {
		return err
	}
	if b.Get(key) != nil {
		return tokenstore.ErrExists
	}
	if err := t.put(b, bucket, key, value, expire, nil); err != nil {
		return fmt.Errorf("bolt: insert %s: %w", bucket, err)
	}
	return nil
}

// put writes header+value under key, where old is the value stored there
// now (nil: none).
func (t *tx) put(b *bbolt.Bucket, bucket string, key, value []byte, expire time.Time, old []byte) error {
	key = bytes.Clone(key) // bbolt keeps the slice until commit
	e := encodeExpire(expire)
	var oldE uint64
	if len(old) >= headerLen {
		oldE = binary.BigEndian.Uint64(old)
	}
	if oldE != e {
		idx := index(t.btx)
		if oldE != 0 {
			if err := idx.Delete(indexKey(oldE, bucket, key)); err != nil {
				return err
			}
		}
		if e != 0 {
			if err := idx.Put(indexKey(e, bucket, key), nil); err != nil {
				return err
			}
		}
	}
	v := make([]byte, headerLen+len(value))
	binary.BigEndian.PutUint64(v, e)
	copy(v[headerLen:], value)
	return b.Put(key, v)
}

// Take returns the value under key and deletes it with its index entry.
// Leaving the entry to the sweep would save about 3 % of an exchange's
// writes, but a deleted user's id would linger in the index until then.
func (t *tx) Take(bucket string, key []byte) ([]byte, error) {
	b, err := t.writeBucket(bucket, false)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, tokenstore.ErrNotFound
	}
	v := b.Get(key)
	if v == nil {
		return nil, tokenstore.ErrNotFound
	}
	if len(v) < headerLen {
		return nil, fmt.Errorf("bolt: take %s: %w", bucket, errBadValue)
	}
	out := bytes.Clone(v[headerLen:])
	if err := t.remove(b, bucket, key, v); err != nil {
		return nil, fmt.Errorf("bolt: take %s: %w", bucket, err)
	}
	return out, nil
}

// Delete removes key and its expiry index entry.
func (t *tx) Delete(bucket string, key []byte) error {
	b, err := t.writeBucket(bucket, false)
	if err != nil || b == nil {
		return err
	}
	v := b.Get(key)
	if v == nil {
		return nil
	}
	if err := t.remove(b, bucket, key, v); err != nil {
		return fmt.Errorf("bolt: delete %s: %w", bucket, err)
	}
	return nil
}

// remove deletes key, whose stored value is v, and its index entry.
func (t *tx) remove(b *bbolt.Bucket, bucket string, key, v []byte) error {
	if len(v) >= headerLen {
		if e := binary.BigEndian.Uint64(v); e != 0 {
			if err := index(t.btx).Delete(indexKey(e, bucket, key)); err != nil {
				return err
			}
		}
	}
	return b.Delete(key)
}

// Scan calls fn for each key with prefix, in byte order, after after.
// fn must not write to the bucket it scans.
func (t *tx) Scan(bucket string, prefix, after []byte, fn func(key, value []byte) bool) error {
	b, err := t.bucket(bucket)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	var k, v []byte
	switch {
	case after != nil && bytes.Compare(after, prefix) >= 0:
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	case len(prefix) > 0:
		k, v = c.Seek(prefix)
	default:
		k, v = c.First()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) < headerLen {
			continue // a nested bucket (v == nil) or not a value of ours
		}
		if !fn(k, v[headerLen:]) {
			break
		}
	}
	return nil
}

// sweep deletes keys whose expiry is before due, and their index entries,
// reading nothing but the due part of the index: at most maxEntries
// entries, and none once want keys of the buckets counted accepts (nil:
// all) went. It reports how many of those went and how many entries it
// took.
func sweep(btx *bbolt.Tx, due uint64, want, maxEntries int, counted func(string) bool) (n, taken int, err error) {
	idx := index(btx)
	var entries [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && len(entries) < maxEntries; k, _ = c.Next() {
		if len(k) < headerLen || binary.BigEndian.Uint64(k) >= due {
			break
		}
		entries = append(entries, bytes.Clone(k))
	}
	for _, k := range entries {
		if n >= want {
			break
		}
		taken++
		if err := idx.Delete(k); err != nil {
			return n, taken, fmt.Errorf("bolt: sweep: %w", err)
		}
		e, bucket, key, ok := splitIndexKey(k)
		if !ok {
			continue
		}
		b := btx.Bucket(bucket)
		if b == nil {
			continue
		}
		// Only the value this entry indexes goes: a stale entry (there
		// should be none) never deletes a live key.
		if v := b.Get(key); len(v) >= headerLen && binary.BigEndian.Uint64(v) == e {
			if err := b.Delete(key); err != nil {
				return n, taken, fmt.Errorf("bolt: sweep %s: %w", bucket, err)
			}
			if counted == nil || counted(string(bucket)) {
				n++
			}
		}
	}
	return n, taken, nil
}
