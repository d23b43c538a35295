-- 0001: the key-value space of the token core.
--
-- One row per key. bucket is one of tokenstore.Buckets; key and value are
-- opaque bytes. bytea compares bytewise (memcmp, then length), which is the
-- order the Store contract asks Scan for, and COLLATE "C" keeps bucket
-- comparisons bytewise as well. expire is NULL for keys that live until
-- deleted; the partial index holds only the keys that expire, so Sweep
-- reads the expired ones in expiry order and never touches the rest.
CREATE TABLE handoff_kv (
	bucket text COLLATE "C" NOT NULL,
	key    bytea NOT NULL,
	value  bytea NOT NULL,
	expire timestamptz,
	PRIMARY KEY (bucket, key)
);

CREATE INDEX handoff_kv_expire ON handoff_kv (expire) WHERE expire IS NOT NULL;
