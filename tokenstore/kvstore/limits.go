package kvstore

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// limitSize is a limit counter's value: its window's start (unix
// nanoseconds) and its count, 8 big-endian bytes each.
const limitSize = 16

// Hit counts one hit on key in the window beginning at start, in one
// Update; a counter of another window starts again at one.
func (s *Store) Hit(ctx context.Context, key string, start, expire time.Time) (int, error) {
	var count uint64
	err := s.b.Update(ctx, func(tx Tx) (err error) {
		if count, err = windowCount(tx, key, start); err != nil {
			return err
		}
		count++
		return putWindowCount(tx, key, start, count, expire)
	})
	if err != nil {
		return 0, err
	}
	return int(min(count, math.MaxInt32)), nil
}

// windowCount is key's count in the window beginning at start: 0 when
// the counter is absent or of another window.
func windowCount(tx Tx, key string, start time.Time) (uint64, error) {
	raw, err := tx.Get(bucketLimits, []byte(key))
	switch {
	case err == nil && len(raw) == limitSize && int64(binary.BigEndian.Uint64(raw)) == start.UnixNano():
		return binary.BigEndian.Uint64(raw[8:]), nil
	case err != nil && !errors.Is(err, tokenstore.ErrNotFound):
		return 0, err
	}
	return 0, nil
}

// putWindowCount stores key's count for the window beginning at start.
func putWindowCount(tx Tx, key string, start time.Time, count uint64, expire time.Time) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, limitSize), uint64(start.UnixNano()))
	return tx.Put(bucketLimits, []byte(key), binary.BigEndian.AppendUint64(v, count), expire)
}

// ForgetHits deletes key's counter.
func (s *Store) ForgetHits(ctx context.Context, key string) error {
	return s.b.Update(ctx, func(tx Tx) error { return tx.Delete(bucketLimits, []byte(key)) })
}
