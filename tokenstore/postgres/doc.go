// Package postgres is the scale-out tokenstore.Store: the token core's
// buckets and keys in one PostgreSQL table, reached through a pgx pool, so
// that several handoff daemons behind a load balancer share tokens,
// sessions, rate-limit counters and plugin values.
//
// # Schema
//
// Every bucket lives in one table (migrations/0001_init.sql):
//
//	handoff_kv(bucket text COLLATE "C", key bytea, value bytea NOT NULL,
//	           expire timestamptz NULL, PRIMARY KEY (bucket, key))
//	handoff_kv_expire ON handoff_kv (expire) WHERE expire IS NOT NULL
//
// bytea compares bytewise (memcmp, then length), which is the order the
// Store contract asks Scan for; the primary key serves Get, Take, Put,
// Delete and the range reads of Scan, and the partial expiry index holds
// only the keys that expire, so Sweep never reads the others. The tables
// carry a handoff_ prefix so they can share a schema (public) with an
// application's own, including another tool's schema_migrations.
//
// Migrations are SQL files embedded in the binary and numbered
// (0001_init.sql, ...). Open applies the missing ones in a single
// transaction holding pg_advisory_xact_lock, so replicas that start
// together do not race: one migrates, the others wait and find nothing
// left to do. handoff_schema_migrations records each version; a database
// at a version this build does not know makes Open fail with
// ErrSchemaTooNew rather than run against a schema it does not understand.
//
// # Atomicity
//
// Update runs fn in a SERIALIZABLE transaction. The core's rules are
// read-modify-write: the failure counter (Get, then Put), the session cap
// (Scan a user's sessions, then Delete the oldest), unique indexes
// (Insert), "the user exists, so give it a session". The embedded store
// runs one writer at a time, so each of them is trivially atomic there;
// PostgreSQL's serializable snapshot isolation gives the same guarantee
// here, that the committed transactions have the effect of some serial
// order, without a global lock. REPEATABLE READ would not: it catches two
// writers of one key (Put is an upsert, so even two inserts), but not a
// decision taken on one key and written to another. Two logins of one user
// that each scan nine sessions would both add a tenth; a login racing the
// deletion of its user would leave a session behind, one that
// authenticates again if a user with the same custom id is created later.
//
// SERIALIZABLE has a cost beyond retries: PostgreSQL tracks the range a
// Scan reads by index page, so transactions that scan and insert keys
// sharing a page conflict though their keys differ. The session-cap scan
// of Exchange does this for users whose ids sort close together (ids are
// time-ordered, so users created together log in on one page): with 64
// concurrent exchanges of 256 consecutive users, about a third of them run
// twice; with users in no particular order, a few in a hundred.
//
// The price of SERIALIZABLE is that PostgreSQL aborts a transaction that
// could break the serial order (SQLSTATE 40001; 40P01 for a deadlock). The
// Store contract lets fn run more than once, so Update rolls back and runs
// fn again after a short jittered backoff, for up to ten seconds; Stats
// counts the retries. A failure that fn swallows still stops the commit:
// the transaction is dead after its first failed statement and Update
// never commits it.
//
// Of concurrent Takes of one key, the first DELETE ... RETURNING locks the
// row; the others wait for it and, once it commits, fail with 40001 and on
// their retry find the key gone: exactly one wins, across any number of
// daemons.
//
// Rows that many writers fight over (a user's failure counter under a
// brute-force attempt, a rate-limit counter, one token exchanged by many
// clients) would make plain retries a herd: N writers read the row, the
// first commits, N-1 fail, all retry at once, and N writers cost about N²/2
// attempts. So a writer whose write lost a row to a concurrent writer waits
// for a session advisory lock on that row before its next BEGIN; the losers
// then go one at a time, each with a snapshot taken after its predecessor
// committed. The lock is released with the COMMIT (same round trip) or by
// the background rollback, never left on a pooled connection; writers that
// have not lost take no lock and pay nothing.
//
// View runs fn in a REPEATABLE READ READ ONLY transaction: one snapshot
// for all of fn's reads, no predicate locks, never a retry.
//
// Sweep deletes expired rows in batches through the expiry index, each
// batch one statement with FOR UPDATE SKIP LOCKED, so replicas can sweep
// at once without deleting (or counting) a row twice or waiting on each
// other.
//
// Count and Forget (tokenstore.Counter) keep the route limits' counters
// that all replicas share, each in one statement outside any transaction:
// an INSERT ... ON CONFLICT DO UPDATE ... RETURNING under the row's lock,
// and a DELETE. The few live limit rows are bumped by many requests at
// once; in serializable transactions they conflicted and retried.
//
// # Round trips
//
// A request's latency on PostgreSQL is mostly round trips, so a
// transaction is pipelined: BEGIN travels with the first statement, Put and
// Delete (whose only answer is success) wait to travel with the next
// statement that needs an answer or with COMMIT, and every Tx call is one
// statement. A read-only transaction, and one that failed, is ended by a
// ROLLBACK in the background, off the caller's path. The core's hot paths
// cost (TestCoreRoundTrips):
//
//	Mint          2  BEGIN+get user; put token+COMMIT
//	Exchange      4  BEGIN+get user; take token; session writes+cap scan; COMMIT
//	              5  when it evicts the oldest session (one more get)
//	Authenticate  3  BEGIN+get by hash; get session; get user (+ROLLBACK later)
//	KV put        1  BEGIN+put+COMMIT
//
// Statements are prepared once per connection (pgx's statement cache) and
// the pool keeps MinConns connections open, so no request pays for a
// connection set-up after a quiet period.
//
// Connect directly or through a pooler in session mode: a transaction-mode
// pooler (PgBouncer's pool_mode=transaction) would move the contended-row
// lock, the search_path of Options.Schema and the idle-transaction timeout
// between server connections. The pgx pool already keeps a daemon's
// connections few and warm.
//
// Connection loss is reported as an error (wrapped, with the operation
// named); the pool replaces broken connections by itself, and an Update
// whose connection broke before COMMIT was sent runs again on a new one.
// A connection broken, or a deadline passed, after COMMIT was sent leaves
// the outcome unknown: the store then makes sure that transaction can no
// longer commit (the server process that ran it is gone, idle, or
// terminated, on another connection) and returns
// tokenstore.ErrCommitUnknown, after which a read sees the outcome (the
// core's Exchange reads its session back). A deadline that passes while
// the server does not answer is tokenstore.ErrUnavailable. Connections
// carry TCP keepalives and TCP_USER_TIMEOUT, so one whose peer went
// silent is dropped by the kernel within seconds. Ping serves readiness
// checks: it fails on a server that answers but takes no writes.//
// # Identities, API keys, plugin values, limits and the sweep
//
// (identities.go, keys.go, kv.go, limits.go, sweep.go)
//
//	Identity, Identities  SELECT by primary key / by (user_id, provider, subject)
//	LinkIdentity          1  INSERT ... ON CONFLICT (provider, subject) DO UPDATE,
//	                         created_at kept; the foreign key refuses an unknown user
//	SignIn, known         1  BEGIN; find identity+user FOR NO KEY UPDATE; UPDATE the
//	                         identity if its fields changed; Mint's eviction; Mint's
//	                         INSERT; COMMIT
//	SignIn, first         +2 BEGIN+reads (linked yet? email owner FOR NO KEY UPDATE,
//	                         phone held?); INSERTs of user, identity, token+COMMIT
//	CreateKey             1  INSERT (first: one statement that inserts the
//	                         bootstrapped marker into handoff_meta only while no key
//	                         is held, and the key only with it)
//	KeyByHash, Keys       1  SELECT (unique hash index / primary key order)
//	DeleteKey             1  DELETE ... RETURNING (first: and the marker, same statement)
//	KVGet, KVList         1  SELECT of live rows; KVList as an index range of the prefix
//	KVPut, KVDelete       1  upsert / DELETE
//	KVUpdate              2  BEGIN+lock-or-create the row; write+COMMIT
//	KVAdd                 1  INSERT ... ON CONFLICT DO UPDATE ... RETURNING
//	Hit, ForgetHits       1  upsert on handoff_limits ... RETURNING count / DELETE
//	Sweep                 1  per batch: DELETE of the ctids a SELECT ... FOR UPDATE
//	                         SKIP LOCKED found through the expiry index
//
// A known identity's sign-in is one pipelined batch, but the statements
// after the first cannot take the user's id as a parameter: it is not
// known when the batch is sent. The first statement therefore leaves it
// in transaction-local settings (set_config(..., true)), which the later
// ones read: the identity's update, and Mint's own eviction and INSERT,
// whose user parameter falls back to the setting. An unknown identity, or
// a blocked user, leaves no setting and the later statements do nothing;
// the settings end with the transaction.
//
// A first sign-in is a READ COMMITTED transaction whose INSERTs are plain:
// two first sign-ins of one identity both find it unknown, and the second
// to insert the identity (or a user with the same email or phone) waits
// for the first, then fails on the unique index, having changed nothing.
// SignIn then runs once more from the start, finds the identity the winner
// linked and resolves to the winner's user. No SERIALIZABLE retry loop is
// needed: the unique indexes are the arbiter.
//
// KVUpdate takes the row with INSERT ... ON CONFLICT DO UPDATE, which
// either creates it (empty, already expired, so it reads as absent) or
// locks the existing one, so two updates of an absent key queue on one
// row like updates of a present one. KVAdd's WHERE leaves a live value
// that is not a counter untouched, and a sum past int64 fails the
// statement: both are ErrInvalidArgument with nothing changed.
//
// # Data from v1
//
// handoff v1 kept every record in one table, handoff_kv(bucket, key,
// value, expire), as JSON of the tokenstore model types in the token
// core's buckets (see tokenstore/kvstore). Open converts such a database
// into the tables above in the migration's own transaction, under its
// advisory lock (migrate_v1.go): replicas that start together convert it
// once, the others wait and find nothing left to do, and a conversion that
// fails leaves the database as it was, v1 data and all. Records are read a
// thousand at a time and stored with the steps' own INSERTs; the buckets
// that were only indexes (users_email, sessions_hash, ...) are left
// behind, since the tables' indexes replace them. The pepper and the
// signing keys move as they are: sealed or not, they open with the same
// keys. Tokens, sessions, API keys and plugin values keep their secrets,
// so a token minted before the upgrade still exchanges and a session
// still authenticates; only a v1 token's IdP tokens are dropped (v1 sealed
// them for the token, v2 seals them for the session it opens, and the
// store never holds the key to seal them again), so such a token opens a
// session of its provider without them.
//
// handoff_kv is then renamed handoff_kv_v1 and kept, not dropped, so the
// data can be looked at or the upgrade rolled back (with a v1 binary and a
// restored backup); drop it once satisfied. A database that never held v1
// data (handoff_kv empty) loses the empty table instead. Stop the v1
// daemons before starting v2 ones: a v1 daemon still running would write
// to a table that is no longer there, and fail.
package postgres
