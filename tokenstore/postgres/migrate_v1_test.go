package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/storetest"
)

// v1Fixture is what testdata/v1.json records of the v1 database in
// testdata/v1.sql (see testdata/README.md).
type v1Fixture struct {
	SecretsKey                string    `json:"secretsKey"`
	Clock                     time.Time `json:"clock"`
	BobID                     string    `json:"bobID"`
	TokenSecret               string    `json:"tokenSecret"`
	ProviderTokenSecret       string    `json:"providerTokenSecret"`
	SessionID                 string    `json:"sessionID"`
	SessionCredential         string    `json:"sessionCredential"`
	ProviderSessionID         string    `json:"providerSessionID"`
	ProviderSessionCredential string    `json:"providerSessionCredential"`
	FirstKeyID                string    `json:"firstKeyID"`
	FirstKeySecret            string    `json:"firstKeySecret"`
	CIKeyID                   string    `json:"ciKeyID"`
	CIKeySecret               string    `json:"ciKeySecret"`
}

func readV1Fixture(t *testing.T) v1Fixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var f v1Fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// v1Schema is the schema handoff v1 made (0001_init.sql and the
// migrations table at version 1), which the fixture's rows go into.
const v1Schema = `CREATE TABLE handoff_schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE handoff_kv (
	bucket text COLLATE "C" NOT NULL,
	key    bytea NOT NULL,
	value  bytea NOT NULL,
	expire timestamptz,
	PRIMARY KEY (bucket, key)
);
CREATE INDEX handoff_kv_expire ON handoff_kv (expire) WHERE expire IS NOT NULL;`

// loadV1 returns a fresh schema holding the v1 database of the fixture.
func loadV1(t *testing.T) string {
	t.Helper()
	schema := freshSchema(t)
	ctx := context.Background()
	conn := admin(t)
	if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()+"; "+v1Schema); err != nil {
		t.Fatalf("v1 schema: %v", err)
	}
	raw, err := os.ReadFile("testdata/v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "INSERT INTO public.")
		if !ok {
			continue
		}
		if _, err := conn.Exec(ctx, "INSERT INTO "+line, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("v1.sql: %v", err)
		}
		n++
	}
	if err := sc.Err(); err != nil || n == 0 {
		t.Fatalf("v1.sql: %d rows, %v", n, err)
	}
	return schema
}

// counts returns the rows of every table of schema, and whether
// handoff_kv and handoff_kv_v1 exist (-1 when not).
func counts(t *testing.T, schema string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn := admin(t)
	out := map[string]int{}
	for _, table := range []string{"handoff_users", "handoff_tokens", "handoff_sessions", "handoff_identities",
		"handoff_api_keys", "handoff_meta", "handoff_plugin_kv", "handoff_limits", "handoff_kv", "handoff_kv_v1"} {
		name := pgx.Identifier{schema, table}.Sanitize()
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		n := -1
		if exists {
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+name).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		out[table] = n
	}
	return out
}

// TestMigrateV1 converts a database written by the v1 code and then uses
// what v1 made through the v2 core: the token minted and the sessions
// opened before the migration, the users, identities, API keys, plugin
// values and limit counters.
func TestMigrateV1(t *testing.T) {
	f := readV1Fixture(t)
	schema := loadV1(t)
	st := openSchema(t, schema, Options{})

	got := counts(t, schema)
	want := map[string]int{"handoff_users": 2, "handoff_tokens": 2, "handoff_sessions": 2, "handoff_identities": 2,
		"handoff_api_keys": 2, "handoff_meta": 4, "handoff_plugin_kv": 4, "handoff_limits": 1,
		"handoff_kv": -1, "handoff_kv_v1": 32}
	if !maps.Equal(got, want) {
		t.Fatalf("after the migration: %v\nwant %v", got, want)
	}

	key, err := base64.StdEncoding.DecodeString(f.SecretsKey)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := tokenstore.NewSealer([][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	clock := storetest.NewClock(f.Clock.Add(time.Minute))
	ctx := context.Background()
	core, err := tokenstore.New(ctx, st, tokenstore.Options{Sealer: sealer, Now: clock.Now})
	if err != nil {
		t.Fatalf("the v2 core on the converted pepper and signing keys: %v", err)
	}

	ada, err := core.FindUserByEmail(ctx, "Ada@example.com")
	if err != nil || ada.ID != "ada" || ada.Name != "Ada Lovelace" || ada.Phone != "+15550100" || !ada.PhoneVerification ||
		!slices.Equal(ada.Labels, []string{"admin", "beta"}) || ada.Prefs["theme"] != "dark" || ada.Extra["team"] != "engines" ||
		!ada.CreatedAt.Equal(f.Clock.Truncate(time.Microsecond)) {
		t.Fatalf("user ada = %+v, %v", ada, err)
	}
	id, err := core.FindIdentity(ctx, "github", "1815")
	if err != nil || id.UserID != "ada" || !id.EmailVerified || id.Claims["login"] != "ada" {
		t.Fatalf("identity github/1815 = %+v, %v", id, err)
	}
	ids, err := core.ListIdentities(ctx, f.BobID)
	if err != nil || len(ids) != 1 || ids[0].Provider != "oidc" || ids[0].Subject != "sub-bob" {
		t.Fatalf("bob's identities = %+v, %v", ids, err)
	}
	// A sign-in of the known identity resolves to its user.
	res, _, _, err := core.SignIn(ctx, id, tokenstore.LinkPolicy{}, nil)
	if err != nil || res.User.ID != "ada" || res.Created {
		t.Fatalf("sign-in of github/1815 = %+v, %v", res, err)
	}

	// The token minted before the migration exchanges once; the sessions
	// opened before it authenticate.
	s, cred, err := core.Exchange(ctx, "ada", f.TokenSecret, tokenstore.Client{})
	if err != nil {
		t.Fatalf("exchange of the v1 token: %v", err)
	}
	if u, got, err := core.Authenticate(ctx, cred); err != nil || u.ID != "ada" || got.ID != s.ID {
		t.Fatalf("session of the v1 token: %+v, %v", got, err)
	}
	if _, _, err := core.Exchange(ctx, "ada", f.TokenSecret, tokenstore.Client{}); err == nil {
		t.Fatal("the v1 token exchanged twice")
	}
	if u, got, err := core.Authenticate(ctx, f.SessionCredential); err != nil || u.ID != "ada" || got.ID != f.SessionID {
		t.Fatalf("v1 session: %+v, %+v, %v", u, got, err)
	}
	u, ps, err := core.Authenticate(ctx, f.ProviderSessionCredential)
	if err != nil || u.ID != f.BobID || ps.ID != f.ProviderSessionID || ps.Provider != "oidc" {
		t.Fatalf("v1 provider session: %+v, %+v, %v", u, ps, err)
	}
	if pt, err := core.ProviderTokens(ps); err != nil || pt.AccessToken != "at-bob" || pt.RefreshToken != "rt-bob" {
		t.Fatalf("the v1 session's IdP tokens: %+v, %v", pt, err)
	}
	// A v1 token with IdP tokens opens a session of its provider, without
	// them (see migrate_v1.go).
	bs, _, err := core.Exchange(ctx, f.BobID, f.ProviderTokenSecret, tokenstore.Client{})
	if err != nil || bs.Provider != "oidc" || bs.ProviderUID != "sub-bob" || len(bs.ProviderTokens) != 0 {
		t.Fatalf("exchange of the v1 provider token: %+v, %v", bs, err)
	}

	for _, k := range []struct{ id, secret string }{{f.FirstKeyID, f.FirstKeySecret}, {f.CIKeyID, f.CIKeySecret}} {
		if got, err := core.AuthenticateKey(ctx, k.secret); err != nil || got.ID != k.id {
			t.Fatalf("v1 API key %s: %+v, %v", k.id, got, err)
		}
	}
	if _, _, made, err := core.CreateFirstKey(ctx, "again", []string{"users.read"}); err != nil || made {
		t.Fatalf("CreateFirstKey after the v1 first key = %v, %v; want none made", made, err)
	}

	kv := core.KV("captcha")
	for k, v := range map[string]string{"plain": "value-1", "ttl": "value-2"} {
		if got, err := kv.Get(ctx, k); err != nil || string(got) != v {
			t.Fatalf("KV %s = %q, %v", k, got, err)
		}
	}
	if n, err := kv.Add(ctx, "counter", 1, 0); err != nil || n != 42 {
		t.Fatalf("KV counter + 1 = %d, %v", n, err)
	}
	if got, err := core.KV("other").Get(ctx, "k"); err != nil || !bytes.Equal(got, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("KV other/k = %x, %v", got, err)
	}
	clock.Advance(24 * time.Hour)
	if _, err := kv.Get(ctx, "ttl"); err == nil {
		t.Fatal("the v1 value with a TTL outlived it")
	}
	if n, _, err := core.Hit(ctx, "login:192.0.2.1", time.Hour, f.Clock.Add(time.Minute)); err != nil || n != 3 {
		t.Fatalf("third hit of the v1 window = %d, %v", n, err)
	}

	// A second Open finds nothing to convert.
	before := counts(t, schema)
	openSchema(t, schema, Options{})
	if after := counts(t, schema); !maps.Equal(after, before) {
		t.Fatalf("a second Open changed the tables: %v, was %v", after, before)
	}
}

// TestMigrateV1Replicas opens one v1 database from several replicas at
// once: the advisory lock lets one convert it, and the others find it
// converted.
func TestMigrateV1Replicas(t *testing.T) {
	schema := loadV1(t)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for range replicas {
		wg.Go(func() {
			st, err := Open(context.Background(), Options{DSN: testDSN(t), Schema: schema})
			if err == nil {
				_ = st.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
	}
	got := counts(t, schema)
	if got["handoff_users"] != 2 || got["handoff_tokens"] != 2 || got["handoff_sessions"] != 2 || got["handoff_meta"] != 4 ||
		got["handoff_kv"] != -1 || got["handoff_kv_v1"] != 32 {
		t.Fatalf("after %d replicas opened at once: %v", replicas, got)
	}
}

// TestMigrateV1Broken: a v1 record that cannot be converted fails Open and
// leaves the database as it was, v1 data, schema version and all, without
// naming the record's key.
func TestMigrateV1Broken(t *testing.T) {
	schema := loadV1(t)
	conn := admin(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, "handoff_kv"}.Sanitize()+
		" (bucket, key, value) VALUES ('users', 'zz-secret-key', '{not json')"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, Options{DSN: testDSN(t), Schema: schema})
	if err == nil || !strings.Contains(err.Error(), "v1 bucket users") || strings.Contains(err.Error(), "zz-secret-key") {
		t.Fatalf("Open of a broken v1 database = %v; want the bucket named, not the key", err)
	}
	got := counts(t, schema)
	if got["handoff_kv"] != 33 || got["handoff_kv_v1"] != -1 || got["handoff_users"] != -1 {
		t.Fatalf("after a failed conversion: %v; want the v1 tables only", got)
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM "+pgx.Identifier{schema, "handoff_schema_migrations"}.Sanitize()).Scan(&version); err != nil || version != 1 {
		t.Fatalf("schema version after a failed conversion = %d, %v; want 1", version, err)
	}
}

// TestMigrateV1Orphans: v1 records of a user that is gone (which v1 never
// left, but a hand-edited database might) are skipped, not fatal.
func TestMigrateV1Orphans(t *testing.T) {
	schema := loadV1(t)
	conn := admin(t)
	ctx := context.Background()
	const at = `"createdAt":"2026-12-01T10:00:00Z","updatedAt":"2026-12-01T10:00:00Z"`
	if _, err := conn.Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, "handoff_kv"}.Sanitize()+" (bucket, key, value) VALUES "+
		`('tokens', 'ghost-t', '{"id":"t","userId":"ghost","hash":"AAAA","expire":"2027-12-01T10:00:00Z",`+at+`}'), `+
		`('sessions', 'ghost-s', '{"id":"s","userId":"ghost","hash":"AAAA","expire":"2027-12-01T10:00:00Z","provider":"x",`+at+`}'), `+
		`('identities', 'ghost-i', '{"provider":"x","subject":"y","userId":"ghost",`+at+`}')`); err != nil {
		t.Fatal(err)
	}
	openSchema(t, schema, Options{})
	got := counts(t, schema)
	if got["handoff_tokens"] != 2 || got["handoff_sessions"] != 2 || got["handoff_identities"] != 2 || got["handoff_kv_v1"] != 35 {
		t.Fatalf("after converting records of a missing user: %v", got)
	}
}

// TestMigrateV1Fresh: a database that never held v1 data keeps no
// handoff_kv of any name.
func TestMigrateV1Fresh(t *testing.T) {
	schema := freshSchema(t)
	openSchema(t, schema, Options{})
	if got := counts(t, schema); got["handoff_kv"] != -1 || got["handoff_kv_v1"] != -1 || got["handoff_users"] != 0 {
		t.Fatalf("fresh database: %v", got)
	}
}
