// Package bench is `handoff bench`: a load generator that measures a
// handoff daemon's speed, memory and scale over its HTTP API, as a client
// SDK and an app's backend use it.
//
// It drives a running daemon (--target URL --key KEY) or, without a
// target, starts one in its own process on a temporary data dir: the
// durable bolt store (or --store postgres), rate limits raised out of the
// way, and for the flow scenario the built-in password plugin, run out of
// process like in production, with argon2id parameters too small for real
// use. The binary's built-in plugin map comes from main.go (Options), so
// this package imports no plugin.
//
// Five scenarios: mint (POST /v1/users/{id}/tokens with the API key),
// exchange (POST /v1/account/sessions/token of tokens minted ahead, not
// measured), pairs (a mint and the exchange of its secret, one operation:
// what a sign-in costs the server), flow (POST /v1/providers/{name}/verify through a plugin, then
// the exchange of the secret it delivered) and account (GET /v1/account
// with a session). --preload N first puts N signed-in users (a session
// and an outstanding token each) in the store, through the token core
// when the daemon runs in process. Each run warms up, measures, prints a
// progress line a second to stderr and a table at the end: operations a
// second, latency percentiles (exact, from every sample), errors by step
// and status, and, for the self-started daemon, the peak RSS of the
// process and of each plugin process while measuring.
//
// --fsync measures the disk's rate of small durable overwrites, the
// ceiling for a store that commits one write at a time, and --startup the
// time from `handoff serve` to its first ready answer with one provider of
// each built-in kind, and the idle RSS of the daemon and its plugins.
//
// docs/performance.md has the method and this machine's figures.
package bench
