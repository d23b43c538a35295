// Package postgres is the scale-out tokenstore.Store: the token core's
// records in typed PostgreSQL tables, reached through a pgx pool, so that
// several handoff daemons behind a load balancer share users, tokens,
// sessions, rate-limit counters and plugin values. Each step of the Store
// is one atomic step on the server, and the hot ones (mint, exchange,
// authenticate, the sign-in of a known identity) cost one round trip;
// under load, mints and exchanges share theirs (see Group commit).
//
// # Schema
//
// Schema v2 (migrations/0002_tables.sql), one table per kind of record.
// Ids are text COLLATE "C", so ORDER BY id is Go's byte order; times are
// timestamptz (microseconds: the core truncates the times it makes to
// match). Every row a user owns goes with the user (ON DELETE CASCADE).
//
//	handoff_users(id PK, name, email NULL, phone NULL, email_verification,
//	    phone_verification, status, labels text[], prefs jsonb, extra jsonb,
//	    created_at, updated_at, accessed_at NULL)
//	    UNIQUE (lower(email)) WHERE email IS NOT NULL
//	    UNIQUE (phone) WHERE phone IS NOT NULL
//	    INDEX (created_at, id)                      ScanUsers' keyset pages
//	handoff_tokens(user_id FK, hash bytea, id, session_id NULL, created_at,
//	    expire, provider, provider_uid, provider_tokens bytea NULL, ip,
//	    user_agent, attempts, PRIMARY KEY (user_id, hash))
//	    INDEX (expire)
//	handoff_sessions(id PK, user_id FK, hash bytea UNIQUE, created_at,
//	    updated_at, expire, provider, provider_uid, provider_tokens NULL,
//	    factors text[], ip, user_agent)
//	    INDEX (user_id, created_at, id)             a user's sessions, oldest first
//	    INDEX (expire)
//	handoff_identities(provider, subject, user_id FK, email, email_verified,
//	    phone, name, claims jsonb, created_at, updated_at,
//	    PRIMARY KEY (provider, subject))
//	    INDEX (user_id, provider, subject)
//	handoff_api_keys(id PK, name, scopes text[], hash bytea UNIQUE,
//	    created_at, expire NULL)
//	handoff_meta(name PK, value bytea)            pepper and signing keys, sealed
//	                                              by the core; markers
//	handoff_plugin_kv(namespace, key, value bytea, expire NULL,
//	    PRIMARY KEY (namespace, key))
//	    INDEX (expire) WHERE expire IS NOT NULL
//	handoff_limits(key PK, window_start, count, expire)
//	    INDEX (expire)
//
// A Go "" is NULL where a unique index must skip it (a user's email and
// phone) and the empty string elsewhere; a nil slice or map is NULL and
// an empty one '{}', so every record reads back as it was written. The
// tables carry a handoff_ prefix so they can share a schema (public) with
// an application's own, including another tool's schema_migrations.
//
// Migrations are SQL files embedded in the binary and numbered
// (0001_init.sql, 0002_tables.sql, ...). Open applies the missing ones in
// a single transaction holding pg_advisory_xact_lock, so replicas that
// start together do not race: one migrates, the others wait and find
// nothing left to do. handoff_schema_migrations records each version; a
// database at a version this build does not know makes Open fail with
// ErrSchemaTooNew rather than run against a schema it does not understand.
//
// # Migration from v1
//
// handoff v1 kept every record in one table, handoff_kv(bucket, key,
// value, expire), as JSON of the tokenstore model types in the token
// core's buckets (see tokenstore/kvstore). Open converts such a database
// into the tables above in the migration's own transaction, under its
// advisory lock (migrate_v1.go): replicas that start together convert it
// once, the others wait and find nothing left to do, and a conversion that
// fails leaves the database as it was, v1 data and all. Records are read a
// few thousand at a time and copied in (COPY), the rows that name a user
// through a temporary table that drops any whose user is gone; the buckets
// that were only indexes (users_email, sessions_hash, ...) are left
// behind, since the tables' indexes replace them. Replicas wait for the
// conversion, which holds the migration lock: on a loaded two-core test
// machine it stored about 5000 records a second. The pepper and the
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
//
// # Steps and their statements
//
// A step is a pgx batch sent at once: in a write step BEGIN ISOLATION
// LEVEL READ COMMITTED goes with its first statement and COMMIT with its
// last, so a step that needs no answer in between is one round trip
// (step.go). The steps and what serves them (round trips measured by
// TestCoreRoundTrips, by the store and on the wire):
//
//	Mint            1  BEGIN; lock the user's row (qLockUser); delete its
//	                   expired tokens and oldest live ones beyond keep
//	                   (qTokensEvict); INSERT … ON CONFLICT the token, only
//	                   if the user exists (qTokenInsert); COMMIT
//	Exchange        1  BEGIN; qLockUser; qExchange: with a route limit,
//	                   read its count and, past the limit, touch nothing;
//	                   else DELETE … RETURNING the token, INSERT the
//	                   session when it was live and below MaxAttempts and
//	                   DELETE the limit's counter, else count the failure
//	                   on the user's other tokens (DELETE the expired and
//	                   the burned, UPDATE attempts+1) and on the limit's
//	                   counter (qHit's upsert), all data-modifying CTEs of
//	                   one statement that also answers why; delete the
//	                   sessions beyond MaxSessions (qSessionEvict); COMMIT.
//	                   So a limited exchange over HTTP is one transaction,
//	                   where a Hit, the exchange and a ForgetHits were
//	                   three; the limit's count is read after the user's
//	                   row lock, so it is exact for the user's steps.
//	CreateSession   1  BEGIN; qLockUser; INSERT (qSessionInsert);
//	                   qSessionEvict; COMMIT
//	SessionByHash   1  SELECT the session JOIN its user, by the hash index
//	Session         1  SELECT by primary key and user
//	SignIn (known)  1  BEGIN; find the identity and lock its user; the
//	                   identity's update; the mint's two statements; COMMIT
//	                   (identities.go). A first sign-in costs two more.
//	CreateUser      1  INSERT; a unique violation is ErrUserExists
//	User, UserByEmail, Sessions, Tokens, Identities, KeyByHash, KVGet:
//	                1  one SELECT each
//	UpdateUser      2  SELECT … FOR NO KEY UPDATE; change runs; UPDATE+COMMIT
//	UpdateSession   2  the same, on the session's row
//	KVUpdate        2  the same, on the key's row (created when absent)
//	Meta            2  pg_advisory_xact_lock and every named value; fn
//	                   runs; the changed values (upserts)+COMMIT
//	DeleteUser, DeleteSession(s), KVPut, KVDelete, KVAdd, Hit, ForgetHits:
//	                1  one statement each
//	ScanUsers       1 a page of 256 users, keyset on (created_at, id)
//	Sweep           1 a batch of up to 1000 rows a statement, per table
//
// Statements are prepared once per connection by pgx's statement cache:
// the first use of a statement on a connection costs a round trip more
// (pgx describes it), after which it is one Bind and Execute. The pool
// keeps MinConns connections open, so they stay warm.
//
// # Isolation
//
// Every step runs at READ COMMITTED and none is ever retried for a
// serialization failure. Each statement of a step sees what committed
// before that statement began, and rows are changed under row locks; the
// rules of the Store then hold for these reasons:
//
//   - One winner per token. The exchange takes its token with DELETE …
//     RETURNING: of concurrent exchanges of one token, one deletes the
//     row; the others wait for its lock and, once the winner commits,
//     find the row gone (READ COMMITTED re-checks a row it waited for)
//     and fail as a wrong secret. The user's row lock below already puts
//     them one after the other; the DELETE would make one win without it.
//   - The caps and the failure count. A step that decides from a user's
//     other rows (the token cap of Mint, the session cap of Exchange and
//     CreateSession, the failure count over the user's tokens, a mint of
//     SignIn) first locks the user's row (SELECT … FOR NO KEY UPDATE) in
//     a statement of its own. Every such step of one user thus runs after
//     the ones before it have committed, and its following statements,
//     each with a snapshot taken after the lock was granted, see all they
//     wrote: two exchanges that each find nine sessions cannot both add a
//     tenth, and a failure is counted on every token a mint made before
//     it. The eviction runs as a statement after the INSERT, so it sees
//     the new session too. FOR NO KEY UPDATE blocks neither reads nor the
//     foreign-key checks (FOR KEY SHARE) of inserts: only the user's other
//     locking steps, and its deletion, wait; users do not wait on each
//     other.
//   - Deletion of a user. DeleteUser's DELETE waits for the user's row
//     lock, so a step in flight finishes first and its rows go with the
//     cascade; a step that comes after it finds no user: its INSERTs are
//     conditioned on the user existing (INSERT … SELECT … WHERE EXISTS), so
//     it stores nothing and answers ErrUserNotFound, and the foreign keys
//     would refuse a row of a missing user anyway.
//   - Meta has no row to lock before the first pepper exists, so it takes
//     a transaction advisory lock: of replicas that start at once on an
//     empty database, the first makes the pepper and the others then read
//     it (TestMetaOneCreator).
//   - The unique indexes (a user's id, lower(email), phone; a session's
//     hash; an identity; an API key's hash) decide between concurrent
//     creators: the loser's INSERT fails and the step answers
//     ErrUserExists or ErrExists.
//
// SERIALIZABLE (v1) gave these rules without the locks, at the price of
// retries that grew with contention; REPEATABLE READ would not give them
// at all (a decision taken on one row and written to another). Row locks
// make contention a queue instead.
//
// Sweep deletes expired rows in batches through each table's expiry
// index, FOR UPDATE SKIP LOCKED, so replicas can sweep at once without
// deleting (or counting) a row twice or waiting on each other or on a
// step.
//
// # Sign-in, API keys and plugin values
//
// The steps of identities.go, keys.go and kv.go that need more than a
// statement to keep their promise.
//
// A known identity's sign-in is one pipelined batch, but the statements
// after the first cannot take the user's id as a parameter: it is not
// known when the batch is sent. The first statement therefore leaves it
// in transaction-local settings (set_config(..., true)), which the later
// ones read: the identity's update, and Mint's own eviction and INSERT,
// whose user parameter falls back to the setting. An unknown identity
// leaves no setting and the later statements do nothing, even if a
// concurrent first sign-in links the identity meanwhile; a blocked user
// leaves none for the mint. The settings end with the transaction.
//
// A first sign-in is a READ COMMITTED transaction whose INSERTs are plain:
// two first sign-ins of one identity both find it unknown, and the second
// to insert the identity (or a user with the same email or phone) waits
// for the first, then fails on the unique index, having changed nothing.
// SignIn then runs once more from the start, finds the identity the winner
// linked and resolves to the winner's user. No SERIALIZABLE retry loop is
// needed: the unique indexes are the arbiter.
//
// CreateKey with first stores the key in one statement whose CTE inserts
// the bootstrapped marker into handoff_meta (ON CONFLICT DO NOTHING) only
// while no key is held, and the key only with the marker: of daemons that
// start together on an empty database, one inserts the marker and the
// others wait on its index entry, find it and store nothing. DeleteKey
// with first deletes the marker in the statement that deletes the key.
//
// KVUpdate takes the row with INSERT ... ON CONFLICT DO UPDATE, which
// either creates it (empty, already expired, so it reads as absent) or
// locks the existing one, so two updates of an absent key queue on one
// row like updates of a present one. KVAdd's WHERE leaves a live value
// that is not a counter untouched, and a sum past int64 fails the
// statement: both are ErrInvalidArgument with nothing changed.
//
// # Group commit
//
// Mint and Exchange, the hot writes, may share one transaction, one
// round trip and one COMMIT with others of their kind (group.go), as
// the bolt store's writer does: on a busy server much of a step's cost
// is per transaction (a backend woken, a plan looked up, a WAL flush),
// not per row. At most Options.Writers (default 4) such transactions run
// at once, and grouping engages only when a step would have waited
// anyway: the first step that finds no open group opens one, and a
// goroutine of that group waits for a writer's turn and a connection;
// the steps that arrive meanwhile join the group (at most 32); once it
// holds both, the group closes and goes as one batch: BEGIN; qLockUsers,
// the rows of all its users in id order; each step's own statements, as
// it would queue them alone (its user's row lock included); COMMIT. A
// step that finds a turn and a connection free is a group of one and
// runs exactly as above. On 2 cores, 4 writers with groups of up to 32
// doubled the exchanges a second of 16 connections each running one.
//
// Deadlocks: a group locks all its users first, in one global order (the
// ids' byte order), then runs its steps in the order of their limit
// keys, so the limit counters too are taken in one global order; the
// other rows a step writes belong to its user, whose row the group
// already holds. A step running alone locks one user and that user's
// rows, or one counter. Two steps of one user in a group run one after
// the other (in their order of arrival when they count the same limit)
// and see each other's writes, as two statements of one transaction: a
// token the first took is gone for the second, a session the first
// stored counts against the second's cap.
//
// Failures stay each step's own: a statement that fails aborts the whole
// transaction (and every statement after it in the pipeline), so the
// group is rolled back and each of its steps runs again, alone, to its
// own outcome (Stats.GroupAlone). A connection that broke before the
// COMMIT could have been sent sends each step to run again as any step
// would; a lost COMMIT gives every step of the group ErrCommitUnknown
// once the group's transaction can no longer commit. A step whose ctx
// ends while it waits in a group answers at once and never runs; once
// the group is sent it runs to its end, under the latest of its steps'
// deadlines (at most Options.Timeout), and every step gets its outcome.
// Stats.Grouped counts the steps that shared their round trip.
//
// # Connections and faults
//
// Connect directly or through a pooler in session mode: a transaction-mode
// pooler (PgBouncer's pool_mode=transaction) would move the search_path of
// Options.Schema, the statement cache and the idle-transaction timeout
// between server connections. The pgx pool already keeps a daemon's
// connections few and warm.
//
// A server that cannot be reached, or stops answering before the caller's
// deadline, gives an error matching tokenstore.ErrUnavailable; the pool
// replaces broken connections by itself, and a step whose connection broke
// before its COMMIT could have been sent runs again on a new one (up to
// three times; Stats.Retries). A connection broken, or a deadline passed,
// after the COMMIT was sent leaves the outcome unknown: the store then
// makes sure that step can no longer commit (the server process that ran
// it is gone, on its own or terminated from another connection; see
// commit.go) and returns tokenstore.ErrCommitUnknown, after which a read
// sees the outcome (the core's Exchange reads its session back). If that
// cannot be made sure in time, the error is plain ErrUnavailable.
// Connections carry TCP keepalives and TCP_USER_TIMEOUT, so one whose peer
// went silent is dropped by the kernel within seconds. Ping serves
// readiness checks: it fails on a server that answers but takes no
// writes.
package postgres
