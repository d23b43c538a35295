-- 0002: the token core's records as typed tables (schema v2).
--
-- Ids are text COLLATE "C", so ORDER BY id is Go's byte order. Times are
-- timestamptz (microseconds; the core truncates the times it makes to
-- match). A Go "" is stored as NULL where a unique index must skip it
-- (users' email and phone) and as '' elsewhere; a nil slice or map is
-- NULL, an empty one '{}', so every value reads back as it was written.
-- Every row a user owns goes with the user (ON DELETE CASCADE).
--
-- handoff_kv (0001) stays as it is: a database that held v1 data there
-- has it converted into these tables at Open, and handoff_kv is then
-- renamed handoff_kv_v1 (see migrate_v1.go).

CREATE TABLE handoff_users (
	id                 text COLLATE "C" PRIMARY KEY,
	name               text NOT NULL,
	email              text,
	phone              text,
	email_verification boolean NOT NULL DEFAULT false,
	phone_verification boolean NOT NULL DEFAULT false,
	status             boolean NOT NULL,
	labels             text[],
	prefs              jsonb,
	extra              jsonb,
	created_at         timestamptz NOT NULL,
	updated_at         timestamptz NOT NULL,
	accessed_at        timestamptz
);
CREATE UNIQUE INDEX handoff_users_email ON handoff_users (lower(email)) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX handoff_users_phone ON handoff_users (phone) WHERE phone IS NOT NULL;
-- ScanUsers walks users in creation order, a keyset page at a time.
CREATE INDEX handoff_users_created ON handoff_users (created_at, id);

-- A token is found by its user and its keyed hash: the exchange's DELETE
-- … RETURNING takes it by primary key, and a user's tokens (the mint cap,
-- the failure count) are the primary key's prefix.
CREATE TABLE handoff_tokens (
	user_id         text COLLATE "C" NOT NULL REFERENCES handoff_users (id) ON DELETE CASCADE,
	hash            bytea NOT NULL,
	id              text COLLATE "C" NOT NULL,
	session_id      text COLLATE "C",
	created_at      timestamptz NOT NULL,
	expire          timestamptz NOT NULL,
	provider        text NOT NULL DEFAULT '',
	provider_uid    text NOT NULL DEFAULT '',
	provider_tokens bytea,
	ip              text NOT NULL DEFAULT '',
	user_agent      text NOT NULL DEFAULT '',
	attempts        integer NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, hash)
);
CREATE INDEX handoff_tokens_expire ON handoff_tokens (expire);

CREATE TABLE handoff_sessions (
	id              text COLLATE "C" PRIMARY KEY,
	user_id         text COLLATE "C" NOT NULL REFERENCES handoff_users (id) ON DELETE CASCADE,
	hash            bytea NOT NULL UNIQUE,
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL,
	expire          timestamptz NOT NULL,
	provider        text NOT NULL DEFAULT '',
	provider_uid    text NOT NULL DEFAULT '',
	provider_tokens bytea,
	factors         text[],
	ip              text NOT NULL DEFAULT '',
	user_agent      text NOT NULL DEFAULT ''
);
-- A user's sessions oldest first: Sessions, and the cap's eviction.
CREATE INDEX handoff_sessions_user ON handoff_sessions (user_id, created_at, id);
CREATE INDEX handoff_sessions_expire ON handoff_sessions (expire);

CREATE TABLE handoff_identities (
	provider       text COLLATE "C" NOT NULL,
	subject        text COLLATE "C" NOT NULL,
	user_id        text COLLATE "C" NOT NULL REFERENCES handoff_users (id) ON DELETE CASCADE,
	email          text NOT NULL DEFAULT '',
	email_verified boolean NOT NULL DEFAULT false,
	phone          text NOT NULL DEFAULT '',
	name           text NOT NULL DEFAULT '',
	claims         jsonb,
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	PRIMARY KEY (provider, subject)
);
CREATE INDEX handoff_identities_user ON handoff_identities (user_id, provider, subject);

CREATE TABLE handoff_api_keys (
	id         text COLLATE "C" PRIMARY KEY,
	name       text NOT NULL,
	scopes     text[],
	hash       bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL,
	expire     timestamptz
);

-- The core's named values: the pepper and the signing keys (sealed by the
-- core before they get here) and markers.
CREATE TABLE handoff_meta (
	name  text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);

-- The plugins' values. The partial index holds only the values that
-- expire, so the sweep never reads the rest.
CREATE TABLE handoff_plugin_kv (
	namespace text COLLATE "C" NOT NULL,
	key       text COLLATE "C" NOT NULL,
	value     bytea NOT NULL,
	expire    timestamptz,
	PRIMARY KEY (namespace, key)
);
CREATE INDEX handoff_plugin_kv_expire ON handoff_plugin_kv (expire) WHERE expire IS NOT NULL;

-- The route limits' window counters.
CREATE TABLE handoff_limits (
	key          text COLLATE "C" PRIMARY KEY,
	window_start timestamptz NOT NULL,
	count        integer NOT NULL,
	expire       timestamptz NOT NULL
);
CREATE INDEX handoff_limits_expire ON handoff_limits (expire);
