// Package bolt is handoff's embedded default store: a tokenstore.Store in
// one bbolt file, with nothing to install or run beside the daemon.
//
// The steps themselves (what Mint, Exchange, SignIn... read and write, and
// under which keys) are tokenstore/kvstore's, written once over ordered
// keys in named buckets; this package gives them those buckets: Open
// returns a Store that is kvstore.Store over the file, plus Path and Stats.
// kvstore's doc shows its layout: a user's tokens and sessions under the
// user, so an exchange rewrites that user's leaf (and its branch) and two
// entries of the expiry index: about 10 KB written per
// exchange at 10,000 signed-in users where layout 1 wrote 20 KB
// (BenchmarkExchangeWrites).
// A file of layout 1 is migrated when Open first meets it. Everything
// below is about the buckets.
//
// # Layout
//
// Each kvstore bucket is a bbolt bucket (all of kvstore.BucketNames are
// created when the file is opened; others on their first write). A value is
// stored as an 8-byte header, its expiry in big-endian unix nanoseconds (0:
// none), followed by the caller's bytes; reads strip the header. A key that
// expires is also entered in an internal index bucket under
//
//	expire(8, big-endian unix nanoseconds) | bucket | 0 | key
//
// so Sweep walks the index from its start and stops at the first entry that
// is not yet due, without ever scanning the data. The header tells Put,
// Delete and Take which index entry to remove when a key is overwritten or
// goes. The index's pages split 90% full, not bbolt's half, since its keys
// arrive in time order.
//
// # Group commit
//
// Every commit is an fsync, and one fsync at a time caps a durable store at
// a few thousand commits a second. Update therefore hands its function to a
// single writer goroutine, which takes the first waiting call, drains the
// calls queued behind it (up to Options.MaxBatch), runs them all in one
// bbolt transaction and commits once. A lone writer is never delayed: there
// is no timer, only the queue that forms while a commit is in progress.
//
// A function that returns an error (or panics) must not spoil the calls
// batched with it: the transaction is rolled back, the batch is run again
// without it, and, once the rest has committed, the failing function is run
// alone in a transaction of its own, so its error reaches its caller and its
// partial writes are discarded. This is the contract bbolt's DB.Batch
// documents, and why kvstore.Buckets allows an Update function to run more
// than once. Functions that report an expected outcome (a wrong secret, say)
// as a value rather than an error never pay for the re-run.
//
// View runs in a bbolt read transaction directly; readers never wait for
// the writer.
//
// # A full or failing disk
//
// A commit that fails (ENOSPC, EDQUOT, EIO, EROFS, or anything else bbolt's
// Commit returns) fails every call of its batch with an error matching
// tokenstore.ErrUnavailable that keeps the cause (errors.Is(err,
// syscall.ENOSPC) holds), so the daemon answers 503 and the client tries
// again. Nothing of it counts: bbolt rolls the transaction back and
// reloads its freelist from the last committed one, so the handle stays
// usable and the writer takes the next batch as usual; no reopen is
// needed. The store heals on the first commit that succeeds.
//
// Ping tells a readiness probe whether writes work without an fsync per
// probe: the store remembers that its last commit failed (and clears that
// on the next commit that succeeds). While it is healthy Ping is an empty
// read transaction. While it is failing, Ping probes at most once a
// second: it writes and syncs 64 KiB to a temporary file beside the store
// (handoff.db.probe-*, removed at once), then commits a tiny write to an
// internal bucket. The side file is the honest part: on a full disk a tiny
// commit alone still fits in pages bbolt already owns and would report a
// recovery that real writes do not see.
//
// # Locking
//
// bbolt locks the file while it is open, so a second daemon on the same
// data directory fails to open it after Options.Timeout with an error
// matching ErrLocked, instead of waiting forever.
package bolt
