package tokenstore

import (
	"context"
	"errors"
	"time"
)

// Store is what a storage backend provides: transactions over ordered byte
// keys grouped in named buckets, and a sweep of expired keys. All policy
// (what a token is, when it may be exchanged) stays in this package.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it durably
	// when fn returns nil. fn may run more than once (a backend may retry
	// it after a conflict or run it alone after a failed group commit),
	// so it must not have effects outside the transaction other than
	// setting variables it also resets.
	Update(ctx context.Context, fn func(Tx) error) error
	// Sweep deletes up to limit keys whose expiry is before now, using an
	// expiry index (never a scan of the data), and reports how many went.
	Sweep(ctx context.Context, now time.Time, limit int) (int, error)
	// Close releases the store. It is safe to call once.
	Close() error
}

// Counter is an optional capability of a Store that several daemons
// share: it counts a hit in one atomic statement of its own, outside any
// transaction, so that counters which many requests bump at once (the
// route limits) never make transactions conflict. A Store without it has
// the core count in an Update.
type Counter interface {
	// Count adds one to the counter under key in bucket for the window
	// that begins at start and returns the count, this hit included; a
	// counter of an earlier window starts again at one. The value is kept
	// as the core keeps it in an Update: the window's start in unix
	// nanoseconds, then the count, 8 bytes big-endian each. The key
	// expires at expire.
	Count(ctx context.Context, bucket string, key []byte, start, expire time.Time) (int, error)
	// Forget deletes a counter, also in a statement of its own. An absent
	// key is no error.
	Forget(ctx context.Context, bucket string, key []byte) error
}

// Tx is one transaction. Slices it returns or passes to callbacks are valid
// only until the transaction ends; values passed to Put or Insert must not
// be modified by the caller afterwards.
type Tx interface {
	// Get returns the value stored under key, or ErrNotFound.
	Get(bucket string, key []byte) ([]byte, error)
	// Put stores value under key, replacing any value there. A non-zero
	// expire enters the key in the expiry index so Sweep removes it after
	// that instant; a zero expire keeps it until deleted.
	Put(bucket string, key, value []byte, expire time.Time) error
	// Insert is Put for an absent key: a present key gives ErrExists and
	// changes nothing.
	Insert(bucket string, key, value []byte, expire time.Time) error
	// Take returns the value under key and deletes it, atomically, or
	// returns ErrNotFound. Of concurrent Takes of one key, one wins.
	Take(bucket string, key []byte) ([]byte, error)
	// Delete removes key and its expiry entry. An absent key is no error.
	Delete(bucket string, key []byte) error
	// Scan calls fn with each key that starts with prefix, in ascending
	// byte order, beginning after the key after (nil: from the first),
	// until fn returns false.
	Scan(bucket string, prefix, after []byte, fn func(key, value []byte) bool) error
}

// The buckets the core uses. A backend creates buckets as they are first
// written; reading a bucket that does not exist yet finds nothing.
const (
	bucketMeta           = "meta"            // pepper, signing keys
	bucketUsers          = "users"           // userId -> user
	bucketUsersByEmail   = "users_email"     // lower(email) -> userId
	bucketUsersByPhone   = "users_phone"     // phone -> userId
	bucketUsersByCreated = "users_created"   // created(8) userId -> ""
	bucketTokens         = "tokens"          // userId 0 hmac -> token
	bucketFailures       = "failures"        // no longer written (counts are on the tokens); old keys expire
	bucketSessions       = "sessions"        // sessionId -> session
	bucketSessionsByHash = "sessions_hash"   // sha256(secret) -> sessionId
	bucketUserSessions   = "user_sessions"   // userId 0 created(8) sessionId -> ""
	bucketIdentities     = "identities"      // provider 0 subject -> identity
	bucketUserIdentities = "user_identities" // userId 0 provider 0 subject -> ""
	bucketKeys           = "keys"            // keyId -> API key
	bucketKeysByHash     = "keys_hash"       // sha256(key) -> keyId
	bucketKV             = "kv"              // namespace 0 key -> plugin value
	bucketLimits         = "limits"          // limit key -> window start(8) count(8)
)

// Buckets lists every bucket the core uses, for backends that prefer to
// create them up front.
var Buckets = []string{
	bucketMeta, bucketUsers, bucketUsersByEmail, bucketUsersByPhone,
	bucketUsersByCreated, bucketTokens, bucketFailures, bucketSessions,
	bucketSessionsByHash, bucketUserSessions, bucketIdentities,
	bucketUserIdentities, bucketKeys, bucketKeysByHash, bucketKV,
	bucketLimits,
}

// Backend sentinels: a Store returns these (wrapped or not) and callers
// check them with errors.Is.
var (
	ErrNotFound = errors.New("tokenstore: not found")
	ErrExists   = errors.New("tokenstore: key exists")
	ErrClosed   = errors.New("tokenstore: store closed")
	// ErrUnavailable is a store that cannot be reached for now (a
	// database restarting, a network cut): the request may be tried again.
	ErrUnavailable = errors.New("tokenstore: store unavailable")
	// ErrCommitUnknown is an Update whose COMMIT may or may not have
	// taken effect: the connection was lost, or the deadline passed,
	// after the COMMIT was sent. A backend returns it only once that
	// transaction can no longer commit later, so a read that follows
	// sees its final outcome. It matches ErrUnavailable too, so a caller
	// that does not read back answers as for any outage.
	ErrCommitUnknown error = commitUnknown{}
)

type commitUnknown struct{}

func (commitUnknown) Error() string { return "tokenstore: commit outcome unknown" }

// Is makes errors.Is(ErrCommitUnknown, ErrUnavailable) true.
func (commitUnknown) Is(target error) bool { return target == ErrUnavailable }

// Core sentinels: what the rules answer. The daemon maps each to one HTTP
// status and Appwrite error type.
var (
	ErrUserNotFound     = errors.New("user not found")
	ErrUserExists       = errors.New("user already exists")
	ErrEmailExists      = errors.New("email already used by another user")
	ErrInvalidToken     = errors.New("invalid token")
	ErrSessionNotFound  = errors.New("session not found")
	ErrJWTInvalid       = errors.New("invalid jwt")
	ErrKeyInvalid       = errors.New("invalid api key")
	ErrKeyExpired       = errors.New("api key expired")
	ErrIdentityUnlinked = errors.New("identity has no user and creation is off")
	ErrInvalidIdentity  = errors.New("provider reported an invalid identity")
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrCursorNotFound   = errors.New("cursor not found")
)

// ArgumentError is an invalid parameter; Param names it and Reason says
// what a valid value is. It matches ErrInvalidArgument.
type ArgumentError struct {
	Param  string
	Reason string
}

func (e *ArgumentError) Error() string {
	return "Invalid `" + e.Param + "` param: " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// IdentityError is an identity a provider reported that the core will not
// store: Field names the part at fault and Reason says why. The value
// itself is left out, since it is personal data or garbage that no answer
// or log should carry. It matches ErrInvalidIdentity.
type IdentityError struct {
	Provider string
	Field    string
	Reason   string
}

func (e *IdentityError) Error() string {
	return "provider " + e.Provider + " reported an invalid identity: its " + e.Field + " " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidIdentity) true.
func (e *IdentityError) Is(target error) bool { return target == ErrInvalidIdentity }
