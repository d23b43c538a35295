package kvstore

import (
	"context"
	"time"
)

// Buckets is what a backend provides to kvstore: transactions over ordered
// byte keys grouped in named buckets, and a sweep of expired keys.
type Buckets interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it durably
	// when fn returns nil. fn may run more than once (a backend may retry
	// it after a conflict or run it alone after a failed group commit),
	// so it must not have effects outside the transaction other than
	// setting variables it also resets.
	Update(ctx context.Context, fn func(Tx) error) error
	// Sweep deletes keys whose expiry is before now, oldest expiry first,
	// using an expiry index (never a scan of the data). It counts the
	// keys of the buckets counted accepts (nil: every key), stops once
	// limit of those went (limit <= 0: none), and reports how many did:
	// a record and its index entries go as one.
	Sweep(ctx context.Context, now time.Time, limit int, counted func(bucket string) bool) (int, error)
	// Close releases the store. It is safe to call once.
	Close() error
}

// Tx is one transaction. Slices it returns or passes to callbacks are valid
// only until the transaction ends; values passed to Put or Insert must not
// be modified by the caller afterwards.
type Tx interface {
	// Get returns the value stored under key, or tokenstore.ErrNotFound.
	Get(bucket string, key []byte) ([]byte, error)
	// Put stores value under key, replacing any value there. A non-zero
	// expire enters the key in the expiry index so Sweep removes it after
	// that instant; a zero expire keeps it until deleted.
	Put(bucket string, key, value []byte, expire time.Time) error
	// Insert is Put for an absent key: a present key gives tokenstore.ErrExists and
	// changes nothing.
	Insert(bucket string, key, value []byte, expire time.Time) error
	// Take returns the value under key and deletes it, atomically, or
	// returns tokenstore.ErrNotFound. Of concurrent Takes of one key, one wins.
	Take(bucket string, key []byte) ([]byte, error)
	// Delete removes key and its expiry entry. An absent key is no error.
	Delete(bucket string, key []byte) error
	// Scan calls fn with each key that starts with prefix, in ascending
	// byte order, beginning after the key after (nil: from the first),
	// until fn returns false.
	Scan(bucket string, prefix, after []byte, fn func(key, value []byte) bool) error
}

// The buckets kvstore uses (layout 2; see doc.go). A backend creates
// buckets as they are first written; reading a bucket that does not exist
// yet finds nothing.
const (
	bucketMeta           = "meta"            // pepper, signing keys
	bucketUsers          = "users"           // userId -> user
	bucketUsersByEmail   = "users_email"     // lower(email) -> userId
	bucketUsersByPhone   = "users_phone"     // phone -> userId
	bucketUsersByCreated = "users_created"   // created(8) userId -> ""
	bucketUserData       = "user_data"       // userId 0 't' hmac -> token; userId 0 's' sha256(secret) -> session
	bucketIdentities     = "identities"      // provider 0 subject -> identity
	bucketUserIdentities = "user_identities" // userId 0 provider 0 subject -> ""
	bucketKeys           = "keys"            // keyId -> API key
	bucketKeysByHash     = "keys_hash"       // sha256(key) -> keyId
	bucketKV             = "kv"              // namespace 0 key -> plugin value
	bucketLimits         = "limits"          // limit key -> window start(8) count(8)
	bucketLayout         = "layout"          // "version" -> the layout's version
)

// The buckets of layout 1 that layout 2 replaced: Open moves their records
// into user_data and empties them.
const (
	v1Tokens         = "tokens"        // userId 0 hmac -> token
	v1Failures       = "failures"      // no longer written in layout 1 either; old keys expire
	v1Sessions       = "sessions"      // sessionId -> session
	v1SessionsByHash = "sessions_hash" // sha256(secret) -> sessionId
	v1UserSessions   = "user_sessions" // userId 0 created(8) sessionId -> ""
)

// BucketNames lists every bucket kvstore uses, for backends that prefer to
// create them up front.
var BucketNames = []string{
	bucketMeta, bucketUsers, bucketUsersByEmail, bucketUsersByPhone,
	bucketUsersByCreated, bucketUserData,
	bucketIdentities, bucketUserIdentities, bucketKeys, bucketKeysByHash,
	bucketKV, bucketLimits, bucketLayout,
}
