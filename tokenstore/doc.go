// Package tokenstore is handoff's token core: users, identities, one-time
// tokens, sessions, API keys, JWT signing keys and the plugins' key-value
// space, and the rules that bind them (Mint, Exchange, the caps on live
// tokens and sessions, the per-token burn after wrong guesses, the text a
// user or an identity may hold, expiry).
//
// The rules live here; storage lives behind the small Store interface, which
// a backend implements as ordered byte keys in named buckets with
// transactions, an atomic take and an expiry index (see tokenstore/bolt and
// tokenstore/postgres). Every backend runs the same tokenstore/storetest
// suites.
//
// Secrets never rest in clear: a token is kept as HMAC-SHA256 under a server
// pepper, a session as SHA-256 of its 256-hex secret, an API key as SHA-256.
// The pepper and the Ed25519 signing seeds, which must be read back, are
// sealed with AES-256-GCM by a Sealer whose keys live outside the store
// (the daemon's secrets.key_file), each bound to its bucket and key; a
// store written before sealing is sealed in place by the first New with a
// Sealer.
package tokenstore
