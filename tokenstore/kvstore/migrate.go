package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// layoutVersion is the layout this package reads and writes. Layout 3 is
// layout 2 with tokens and sessions in their binary form (records.go);
// since their JSON form still reads, a layout 2 file needs only the mark,
// which keeps builds of layout 2, which cannot read the binary form, from
// opening it.
const (
	layoutVersion = "3"
	layout2       = "2"
)

// layoutKey holds the layout's version in bucketLayout.
var layoutKey = []byte("version")

// migrateChunk is how many records one migration transaction moves, so a
// large file is migrated in commits of bounded size, and an interrupted
// migration goes on from where it stopped at the next Open.
var migrateChunk = 1000

// testHookMigrated, when set, runs after each migration transaction
// commits; an error it returns stops the migration there, as a crash
// would.
var testHookMigrated func() error

// Open returns the typed store over b, first moving a file of layout 1
// (tokens, sessions and their indexes in buckets of their own) to layout
// 3, in transactions of at most a few migrateChunk records; the last one
// marks the layout. A migration that stopped (a crash, a full disk) goes
// on from where it was at the next Open. A file of layout 2 is marked
// layout 3 in one small transaction. A backend that holds a layout newer
// than this code gives an error.
func Open(ctx context.Context, b Buckets) (*Store, error) {
	s := New(b)
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("kvstore: migrate to layout %s: %w", layoutVersion, err)
	}
	return s, nil
}

// migrate brings the layout to layoutVersion.
func (s *Store) migrate(ctx context.Context) error {
	var version []byte
	err := s.b.View(ctx, func(tx Tx) (err error) {
		version, err = tx.Get(bucketLayout, layoutKey)
		version = clone(version)
		return err
	})
	switch {
	case err == nil && string(version) == layoutVersion:
		return nil
	case err == nil && string(version) == layout2:
		return s.b.Update(ctx, func(tx Tx) error {
			return tx.Put(bucketLayout, layoutKey, []byte(layoutVersion), time.Time{})
		})
	case err == nil:
		return fmt.Errorf("the store has layout %q, which this version does not know", version)
	case !errors.Is(err, tokenstore.ErrNotFound):
		return err
	}
	for done := false; !done; {
		err := s.b.Update(ctx, func(tx Tx) error {
			done = false
			for _, step := range []func(Tx) (int, error){moveTokens, moveSessions, dropV1Leftovers} {
				if n, err := step(tx); err != nil || n == migrateChunk {
					return err // more to do in the next transaction
				}
			}
			done = true
			return tx.Put(bucketLayout, layoutKey, []byte(layoutVersion), time.Time{})
		})
		if err != nil {
			return err
		}
		if testHookMigrated != nil {
			if err := testHookMigrated(); err != nil {
				return err
			}
		}
	}
	return nil
}

// firstRecords returns up to migrateChunk records of bucket, from its
// first key.
func firstRecords(tx Tx, bucket string) (keys, values [][]byte, err error) {
	err = tx.Scan(bucket, nil, nil, func(k, v []byte) bool {
		keys, values = append(keys, clone(k)), append(values, clone(v))
		return len(keys) < migrateChunk
	})
	return keys, values, err
}

// moveTokens moves a chunk of layout 1's tokens (userId 0 hmac) under
// their users in user_data.
func moveTokens(tx Tx) (int, error) {
	keys, values, err := firstRecords(tx, v1Tokens)
	if err != nil {
		return 0, err
	}
	for i, k := range keys {
		var t tokenstore.Token
		if err := json.Unmarshal(values[i], &t); err != nil {
			return 0, fmt.Errorf("token %q: %w", k, err)
		}
		userID, hash, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return 0, fmt.Errorf("token key %q has no user", k)
		}
		if err := tx.Put(bucketUserData, tokenKey(string(userID), hash), values[i], t.Expire); err != nil {
			return 0, err
		}
		if err := tx.Delete(v1Tokens, k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// moveSessions moves a chunk of layout 1's sessions (by id, with their
// hash and user index entries) under their users in user_data.
func moveSessions(tx Tx) (int, error) {
	keys, values, err := firstRecords(tx, v1Sessions)
	if err != nil {
		return 0, err
	}
	for i, k := range keys {
		var s tokenstore.Session
		if err := json.Unmarshal(values[i], &s); err != nil {
			return 0, fmt.Errorf("session %q: %w", k, err)
		}
		v1UserKey := append(append(prefix(s.UserID), timeKey(s.CreatedAt)...), s.ID...)
		for _, del := range []struct {
			bucket string
			key    []byte
		}{{v1Sessions, k}, {v1SessionsByHash, s.Hash}, {v1UserSessions, v1UserKey}} {
			if err := tx.Delete(del.bucket, del.key); err != nil {
				return 0, err
			}
		}
		if err := putSession(tx, s); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// dropV1Leftovers deletes a chunk of what layout 1's indexes and failure
// counts still hold once their records have moved: entries of sessions
// that were gone already.
func dropV1Leftovers(tx Tx) (int, error) {
	n := 0
	for _, bucket := range []string{v1SessionsByHash, v1UserSessions, v1Failures} {
		keys, _, err := firstRecords(tx, bucket)
		if err != nil {
			return 0, err
		}
		for _, k := range keys[:min(len(keys), migrateChunk-n)] {
			if err := tx.Delete(bucket, k); err != nil {
				return 0, err
			}
			n++
		}
	}
	return n, nil
}
