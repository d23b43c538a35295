package tokenstore

import (
	"context"
	"errors"
	"time"
)

// Store is what a storage backend provides: the token core's records,
// typed, and the atomic steps that read and write them. The core keeps
// what needs no store (parameter checks, ids and secrets, hashing,
// sealing, what a session or token carries); the store keeps what must be
// atomic. Each method is one atomic step: it takes effect entirely or not
// at all, and two steps that race behave as if one ran after the other.
//
// The rules a step applies (how many tokens a user keeps, when a token
// burns, which sessions go first) come in as parameters, so every store
// applies the same numbers; tokenstore/storetest is the one definition of
// how each step behaves, and every store passes all of it.
//
// Every method honours ctx's deadline. A store that cannot be reached
// returns an error matching ErrUnavailable; one that lost its connection
// after sending a COMMIT returns ErrCommitUnknown once that transaction
// can no longer commit later.
//
// Records passed in must not be modified by the caller during the call;
// records returned belong to the caller.
type Store interface {
	// Mint stores t for its user (t.UserID) and, in the same step,
	// deletes the user's expired tokens and, of the live ones, the oldest
	// (by CreatedAt, then ID) beyond keep, so the user holds at most
	// keep+1 live tokens afterwards. A token of the user with the same
	// Hash is replaced. An unknown user gives ErrUserNotFound and stores
	// nothing.
	Mint(ctx context.Context, t Token, keep int, now time.Time) error

	// Exchange consumes the token x.Hash of user x.UserID and opens the
	// session x.Session, atomically: of concurrent exchanges of one
	// token, one succeeds. See Exchange for the whole step.
	Exchange(ctx context.Context, x Exchange) (ExchangeResult, error)

	// CreateSession stores s (a session opened without a token) and
	// evicts the user's sessions beyond maxSessions (<0: none), as
	// Exchange does. An unknown user gives ErrUserNotFound.
	CreateSession(ctx context.Context, s Session, maxSessions int) error
	// SessionByHash returns the user's session whose Hash is hash, with
	// the user, or ErrSessionNotFound (also when the user is gone). The
	// credential names both, so a store may keep a session under its
	// user. Expiry is the core's to check.
	SessionByHash(ctx context.Context, userID string, hash []byte) (User, Session, error)
	// Session returns the user's session id, or ErrSessionNotFound (also
	// when it is another user's).
	Session(ctx context.Context, userID, id string) (Session, error)
	// Sessions returns the user's stored sessions, expired ones included,
	// oldest (CreatedAt, then ID) first.
	Sessions(ctx context.Context, userID string) ([]Session, error)
	// UpdateSession applies change to the user's session id and stores
	// the result (the id, user and hash unchanged), in one step; change
	// may run more than once and must have no other effect. A session
	// that is not the user's gives ErrSessionNotFound; an error from
	// change is returned and nothing is stored.
	UpdateSession(ctx context.Context, userID, id string, change func(*Session) error) (Session, error)
	// DeleteSession deletes the user's session id, or gives
	// ErrSessionNotFound.
	DeleteSession(ctx context.Context, userID, id string) error
	// DeleteSessions deletes every session of the user and reports how
	// many there were.
	DeleteSessions(ctx context.Context, userID string) (int, error)

	// Tokens returns every stored token of the user, expired ones
	// included, in no particular order.
	Tokens(ctx context.Context, userID string) ([]Token, error)

	// CreateUser stores u. An id, email or phone another user holds gives
	// ErrUserExists. Emails arrive lower-cased.
	CreateUser(ctx context.Context, u User) error
	// User returns the user id, or ErrUserNotFound.
	User(ctx context.Context, id string) (User, error)
	// UserByEmail returns the user whose (lower-cased) email is email, or
	// ErrUserNotFound.
	UserByEmail(ctx context.Context, email string) (User, error)
	// UpdateUser applies change to the user id and stores the result (id
	// and CreatedAt unchanged) in one step; change may run more than once
	// and must have no other effect. An email or phone another user
	// holds gives ErrUserExists; an error from change is returned and
	// nothing is stored.
	UpdateUser(ctx context.Context, id string, change func(*User) error) (User, error)
	// DeleteUser deletes the user with everything it owns (tokens,
	// sessions, identities), or gives ErrUserNotFound.
	DeleteUser(ctx context.Context, id string) error
	// ScanUsers calls fn with each user in creation order (CreatedAt,
	// then ID), starting after the user after ("" from the first; an
	// unknown one gives ErrCursorNotFound), until fn returns false. It
	// may read in batches: users created or deleted meanwhile may or may
	// not be seen.
	ScanUsers(ctx context.Context, after string, fn func(User) bool) error

	// Identity returns the identity of subject at provider, or
	// ErrNotFound.
	Identity(ctx context.Context, provider, subject string) (Identity, error)
	// LinkIdentity stores id for its user (id.UserID, which must exist:
	// else ErrUserNotFound), replacing an identity of the same provider
	// and subject but keeping its CreatedAt; it returns what was stored.
	LinkIdentity(ctx context.Context, id Identity) (Identity, error)
	// SignIn is the sign-in of an identity the store may already know,
	// in one step. See SignIn for the rules.
	SignIn(ctx context.Context, s SignIn) (SignInResult, error)
	// Identities returns the user's identities in (provider, subject)
	// order.
	Identities(ctx context.Context, userID string) ([]Identity, error)

	// CreateKey stores k. With first set it stores k only when no API key
	// was ever stored before (none is held, and none was made and then
	// revoked), and reports whether it did.
	CreateKey(ctx context.Context, k APIKey, first bool) (bool, error)
	// KeyByHash returns the API key whose Hash is hash, or ErrKeyInvalid.
	KeyByHash(ctx context.Context, hash []byte) (APIKey, error)
	// Keys returns every API key in id order.
	Keys(ctx context.Context) ([]APIKey, error)
	// DeleteKey deletes the API key id (ErrNotFound when absent); with
	// first set it also forgets that a first key was made, undoing a
	// CreateKey(first) whose key could not be shown.
	DeleteKey(ctx context.Context, id string, first bool) error

	// Meta runs fn on the core's named values (the pepper, the signing
	// keys, the sealed marker) in one read-write step; fn may run more
	// than once and must only set variables it also resets.
	Meta(ctx context.Context, fn func(MetaTx) error) error

	// KV is the plugins' key-value space: see KVStore.
	KVStore

	// Hit counts a hit on the limit key for the window that begins at
	// start and returns the count, this hit included; a counter of an
	// earlier window starts again at one. The counter expires at expire.
	Hit(ctx context.Context, key string, start, expire time.Time) (int, error)
	// ForgetHits deletes the limit key's counter. An absent key is no
	// error.
	ForgetHits(ctx context.Context, key string) error

	// Sweep deletes up to limit expired records (tokens, sessions, plugin
	// values, limit counters) whose expiry is before now, through an
	// expiry index, and reports how many went.
	Sweep(ctx context.Context, now time.Time, limit int) (int, error)
	// Ping reports whether the store takes writes now, cheaply enough for
	// a readiness probe.
	Ping(ctx context.Context) error
	// Shared reports whether several daemons may share the store (so the
	// route limits are counted in it rather than in memory).
	Shared() bool
	// Close releases the store. It is safe to call once.
	Close() error
}

// MetaTx reads and writes the core's named values inside Store.Meta.
type MetaTx interface {
	// Get returns the value name, or ErrNotFound.
	Get(name string) ([]byte, error)
	// Put stores value under name.
	Put(name string, value []byte) error
}

// KVStore keeps the plugins' values: namespace, then key. A value may
// expire; an expired value is absent to every read before the sweep
// removes it.
type KVStore interface {
	// KVGet returns the live value, or ErrNotFound.
	KVGet(ctx context.Context, ns, key string, now time.Time) ([]byte, error)
	// KVPut stores value, expiring at expire (zero: never).
	KVPut(ctx context.Context, ns, key string, value []byte, expire time.Time) error
	// KVDelete deletes the value. An absent key is no error.
	KVDelete(ctx context.Context, ns, key string) error
	// KVList returns up to limit live entries whose keys start with
	// prefix, in byte order of the key, after the key after ("" from the
	// first).
	KVList(ctx context.Context, ns, prefix, after string, limit int, now time.Time) ([]KVEntry, error)
	// KVUpdate applies change to the live value (nil when absent) and
	// stores what it returns, expiring at expire, or deletes the key
	// when it returns nil, in one step; change may run more than once
	// and must have no other effect.
	KVUpdate(ctx context.Context, ns, key string, now, expire time.Time, change func(old []byte) ([]byte, error)) error
	// KVAdd adds delta to the int64 counter under key (absent or expired
	// is 0; the value is CounterSize bytes, big-endian) and returns the
	// sum, storing it to expire at expire (zero: never). A value that is
	// not CounterSize bytes, or a sum that overflows, gives
	// ErrInvalidArgument and changes nothing.
	KVAdd(ctx context.Context, ns, key string, delta int64, now, expire time.Time) (int64, error)
}

// Exchange is one exchange step: consume user UserID's token whose Hash is
// Hash and open Session.
//
// The step, in the store's one atomic step:
//
//   - An unknown user: Reason ExchangeUnknownUser; nothing changes.
//   - The user's token with Hash is taken (deleted) in any case. When it
//     is live (Now is not after its Expire) and its Attempts are below
//     MaxAttempts, the session is stored: Session as given, except that a
//     token with a Provider gives the session its Provider, ProviderUID,
//     Factors ([Provider]) and ProviderTokens, and a token with a
//     SessionID gives the session that ID. Then the user's sessions
//     beyond MaxSessions (<0: no cap; oldest by CreatedAt, then ID) are
//     deleted. Result: OK, and the session as stored.
//   - Otherwise (no such token, or it expired, or burned) the failure is
//     counted on every other token of the user: expired ones are
//     deleted, the rest get Attempts+1, and those that reach MaxAttempts
//     are deleted (Burned counts them). Reason: ExchangeWrongSecret,
//     ExchangeExpired (the token had expired) or ExchangeBurned (it was
//     live but at MaxAttempts).
//
// With Limit set, the step keeps the route limit's counter too, so a
// request costs the store one step where a Hit before it and a
// ForgetHits after it would cost three. Before anything else the step
// reads the counter under Limit.Key (Hit's counter: absent, or of a
// window other than the one that begins at Limit.Start, is 0); Hits is
// that count plus this request. When Hits is above Limit.Max the step is
// refused (Limited) and changes nothing, the token and the counter
// included. Else the exchange runs as above, and then a success deletes
// the counter (as ForgetHits) and a failure, an unknown user's included,
// counts one hit on it (as Hit, expiring at Limit.Expire). The count is
// read after the user's other steps (each step on a user is atomic), so
// a parallel burst of wrong guesses at one user gets at most Limit.Max
// of them to the token.
type Exchange struct {
	UserID      string
	Hash        []byte
	Now         time.Time
	MaxAttempts int
	Session     Session
	MaxSessions int
	Limit       *Limit
}

// ExchangeResult is what an Exchange step did.
type ExchangeResult struct {
	OK      bool
	Session Session         // the session stored, when OK
	Reason  ExchangeFailure // why not, when not OK
	Burned  int             // tokens the failure burned
	Limited bool            // refused by Limit: nothing changed
	Hits    int             // Limit's count with this request (0 without Limit)
}

// Limit is a route limit that a step counts itself (see Exchange): the
// counter Hit keeps under Key, for the window that begins at Start and
// ends at Expire, which lets Max hits through.
type Limit struct {
	Key    string
	Start  time.Time
	Expire time.Time
	Max    int
}

// SignIn is one sign-in step of an identity a provider verified: resolve
// it to a user and, when Token is set, mint the token for that user.
//
// The step:
//
//   - A known (Provider, Subject) resolves to its user. When the stored
//     identity's fields (email, its verification, phone, name, claims)
//     differ from Identity's, they are updated (CreatedAt kept,
//     UpdatedAt = Identity.UpdatedAt); else nothing is written for it.
//   - An unknown one with an Email owned by a user: with
//     Policy.LinkByEmail and EmailVerified, it is linked to that user,
//     whose EmailVerification is set (UpdatedAt = Identity.UpdatedAt)
//     when the emails match case-insensitively; else, with Policy.Create,
//     ErrEmailExists; else on to the next rule.
//   - Else, with Policy.Create, NewUser is created (its phone dropped when
//     another user holds it) and the identity linked to it (Created).
//   - Else ErrIdentityUnlinked.
//
// Then, with Token set and the resolved user active (Status true), the
// token is minted for that user as Mint does with Keep (Token.UserID is
// set to the user; Minted reports it). A blocked user gets no token. An
// error leaves nothing changed.
type SignIn struct {
	Identity Identity
	Policy   LinkPolicy
	NewUser  User // the user to create, its id and times set; Email lower-cased
	Token    *Token
	Keep     int
	Now      time.Time
}

// SignInResult is what a SignIn step did.
type SignInResult struct {
	User     User
	Identity Identity // as stored
	Created  bool     // NewUser was created
	Minted   bool     // Token was stored
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
	ErrRateLimited      = errors.New("rate limit exceeded")
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
