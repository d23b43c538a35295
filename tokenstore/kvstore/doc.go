// Package kvstore is the token core's Store over ordered byte keys in
// named buckets: the layout and the atomic steps written once in Go, for
// any backend that offers transactions over buckets (Buckets). The
// embedded store (tokenstore/bolt) is this over one bbolt file.
//
// New(b) returns a tokenstore.Store whose every step is one transaction of
// b: a View for a read, an Update for a write. The rules a step applies
// arrive as its parameters (keep, MaxAttempts, MaxSessions, now), so this
// package holds no policy of its own; tokenstore/storetest checks it, and
// kvtest checks a backend's transactions.
//
// # Layout
//
// Values are the JSON of the tokenstore model types (User, Token, Session,
// Identity, APIKey), as the v1 core wrote them, so a file written before
// the typed Store opens unchanged. Keys join their parts with a 0 byte;
// times in keys are 8 bytes of big-endian unix nanoseconds, so keys sort
// by time:
//
//	users            userId                      -> User
//	users_email      lower(email)                -> userId
//	users_phone      phone                       -> userId
//	users_created    created(8) userId           -> ""
//	tokens           userId 0 hmac               -> Token (expires with it)
//	sessions         sessionId                   -> Session (expires with it)
//	sessions_hash    sha256(secret)              -> sessionId
//	user_sessions    userId 0 created(8) id      -> ""
//	identities       provider 0 subject          -> Identity
//	user_identities  userId 0 provider 0 subject -> ""
//	keys             keyId                       -> APIKey
//	keys_hash        sha256(key)                 -> keyId
//	meta             name                        -> the core's value
//	kv               namespace 0 key             -> expire(8) value
//	limits           key                         -> window start(8) count(8)
//
// A user's tokens sit under the user, so Mint and Exchange read and
// rewrite only that user's. Exchange takes the token by its key (of
// concurrent exchanges one Take wins), then opens the session and evicts
// through user_sessions, or counts the failure on every token of the user.
//
// A plugin value carries its own expiry in front of it, so a read hides
// an expired value before the sweep removes it; every key that expires is
// also given its expiry on Put, for the backend's expiry index.
package kvstore
