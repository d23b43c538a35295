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
	k := []byte(key)
	var count uint64
	err := s.b.Update(ctx, func(tx Tx) error {
		count = 1
		raw, err := tx.Get(bucketLimits, k)
		switch {
		case err == nil && len(raw) == limitSize && int64(binary.BigEndian.Uint64(raw)) == start.UnixNano():
			count = binary.BigEndian.Uint64(raw[8:]) + 1
		case err != nil && !errors.Is(err, tokenstore.ErrNotFound):
			return err
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, limitSize), uint64(start.UnixNano()))
		return tx.Put(bucketLimits, k, binary.BigEndian.AppendUint64(v, count), expire)
	})
	if err != nil {
		return 0, err
	}
	return int(min(count, math.MaxInt32)), nil
}

// ForgetHits deletes key's counter.
func (s *Store) ForgetHits(ctx context.Context, key string) error {
	return s.b.Update(ctx, func(tx Tx) error { return tx.Delete(bucketLimits, []byte(key)) })
}
