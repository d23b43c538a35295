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
// Tokens and sessions, which every sign-in writes, are stored in a
// compact binary form (records.go), about a third the size of their
// JSON. The other values are the JSON of the tokenstore model types
// (User, Identity, APIKey). Keys join their parts with a 0 byte; times
// in keys are 8 bytes of big-endian unix nanoseconds, so keys sort by
// time. This is layout 3:
//
//	users            userId                        -> User
//	users_email      lower(email)                  -> userId
//	users_phone      phone                         -> userId
//	users_created    created(8) userId             -> ""
//	user_data        userId 0 't' hmac             -> Token (expires with it)
//	user_data        userId 0 's' sha256(secret)   -> Session (expires with it)
//	identities       provider 0 subject            -> Identity
//	user_identities  userId 0 provider 0 subject   -> ""
//	keys             keyId                         -> APIKey
//	keys_hash        sha256(key)                   -> keyId
//	meta             name                          -> the core's value
//	kv               namespace 0 key               -> expire(8) value
//	limits           key                           -> window start(8) count(8)
//	layout           "version"                     -> "3"
//
// A user's tokens and sessions sit together under the user in one bucket,
// so a Mint or an Exchange reads and rewrites the user's few pages there
// and nowhere else but the expiry index: the exchange takes the token,
// stores the session next to it and evicts the oldest beyond the cap, all
// on one leaf as a rule. Every request names the user (a credential
// carries the user id beside the secret), so no index by secret is kept:
// SessionByHash is one Get. Listing a user's sessions, or finding one by
// id, scans the user's few sessions and sorts them by CreatedAt, then ID.
// Of concurrent exchanges of one token, one Take wins.
//
// Layout 2 is layout 3 with tokens and sessions as JSON. The binary form
// reads beside the JSON one, so Open only marks such a file as layout 3
// (which keeps the builds of layout 2 from opening it) and its records
// are rewritten in binary as they are next written.
//
// Layout 1 (the v1 core's) kept tokens in "tokens" (userId 0 hmac),
// sessions by id in "sessions", with "sessions_hash" (hash -> id) and
// "user_sessions" (userId 0 created(8) id) beside them: four trees, each
// written at a random page by every exchange. Open moves such a file to
// layout 3 in transactions of a bounded number of records, resuming where
// it stopped if interrupted, and marks it; the values are unchanged.
//
// A plugin value carries its own expiry in front of it, so a read hides
// an expired value before the sweep removes it; every key that expires is
// also given its expiry on Put, for the backend's expiry index.
package kvstore
