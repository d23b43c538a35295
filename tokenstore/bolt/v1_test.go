package bolt

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/handoffd/handoff/tokenstore"
)

// v1Fixture is testdata/v1.json: what v1fixture made in testdata/v1.db.
type v1Fixture struct {
	Now         time.Time `json:"now"`
	Alice       string    `json:"alice"`
	Bob         string    `json:"bob"`
	Carol       string    `json:"carol"`
	TokenSecret string    `json:"tokenSecret"`
	BobSecret   string    `json:"bobSecret"`
	Credential  string    `json:"credential"`
	SessionID   string    `json:"sessionId"`
	APIKey      string    `json:"apiKey"`
	APIKeyID    string    `json:"apiKeyId"`
}

// openV1 opens a copy of testdata/v1.db and reads its fixture.
func openV1(t *testing.T) (*Store, v1Fixture) {
	t.Helper()
	var f v1Fixture
	raw, err := os.ReadFile("testdata/v1.json")
	must(t, err)
	must(t, json.Unmarshal(raw, &f))
	db, err := os.ReadFile("testdata/v1.db")
	must(t, err)
	path := filepath.Join(t.TempDir(), "handoff.db")
	must(t, os.WriteFile(path, db, 0o600))
	s, err := Open(path, Options{})
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, f
}

// v1Pepper reads the file's pepper, stored plain by a core without a
// Sealer.
func v1Pepper(t *testing.T, s *Store) []byte {
	t.Helper()
	var pepper []byte
	must(t, s.Meta(context.Background(), func(m tokenstore.MetaTx) (err error) {
		pepper, err = m.Get("pepper")
		return err
	}))
	if len(pepper) != 32 {
		t.Fatalf("pepper is %d bytes", len(pepper))
	}
	return pepper
}

func tokenHash(pepper []byte, secret string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// credentialHash is the session hash of an Appwrite-style credential.
func credentialHash(t *testing.T, cred string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(cred)
	must(t, err)
	var c struct{ Secret string }
	must(t, json.Unmarshal(raw, &c))
	return sha256Of(c.Secret)
}

// TestV1File: a store file written by the v1 core (layout 1) is migrated
// at Open, every record reads back through the typed steps, and the
// token, session and API key made before work.
func TestV1File(t *testing.T) {
	s, f := openV1(t)
	ctx := context.Background()
	pepper := v1Pepper(t, s)

	// Open moved layout 1's buckets into layout 2's and marked it.
	must(t, s.b.db.View(func(btx *bbolt.Tx) error {
		for _, name := range []string{"tokens", "sessions", "sessions_hash", "user_sessions", "failures"} {
			if b := btx.Bucket([]byte(name)); b != nil && b.Stats().KeyN != 0 {
				t.Errorf("layout 1's bucket %s holds %d keys after Open", name, b.Stats().KeyN)
			}
		}
		if v := btx.Bucket([]byte("layout")).Get([]byte("version")); len(v) < headerLen || string(v[headerLen:]) != "2" {
			t.Errorf("layout version = %q", v)
		}
		if n := btx.Bucket([]byte("user_data")).Stats().KeyN; n != 4 {
			t.Errorf("user_data holds %d keys, want 4 (3 tokens, 1 session)", n)
		}
		return nil
	}))

	alice, err := s.UserByEmail(ctx, "alice@example.com")
	must(t, err)
	if alice.ID != f.Alice || alice.Name != "Alice" || alice.Phone != "+15550001" || !slices.Equal(alice.Labels, []string{"admin"}) || alice.Prefs["theme"] != "dark" {
		t.Fatalf("alice = %+v", alice)
	}
	var order []string
	must(t, s.ScanUsers(ctx, "", func(u tokenstore.User) bool { order = append(order, u.ID); return true }))
	if !slices.Equal(order, []string{f.Alice, f.Bob, f.Carol}) {
		t.Fatalf("ScanUsers = %q", order)
	}

	// The session opened by a v1 exchange authenticates.
	u, sess, err := s.SessionByHash(ctx, f.Alice, credentialHash(t, f.Credential))
	must(t, err)
	if u.ID != f.Alice || sess.ID != f.SessionID || sess.Provider != "token" || sess.UserAgent != "fixture" {
		t.Fatalf("SessionByHash = %s, %+v", u.ID, sess)
	}
	sessions, err := s.Sessions(ctx, f.Alice)
	must(t, err)
	if len(sessions) != 1 || sessions[0].ID != f.SessionID {
		t.Fatalf("Sessions = %+v", sessions)
	}

	// Alice's two tokens both faced the wrong guess.
	toks, err := s.Tokens(ctx, f.Alice)
	must(t, err)
	if len(toks) != 2 || toks[0].Attempts != 1 || toks[1].Attempts != 1 {
		t.Fatalf("Tokens = %+v", toks)
	}

	// The live token of a v1 mint exchanges once.
	now := f.Now.Add(5 * time.Minute)
	x := tokenstore.Exchange{UserID: f.Alice, Hash: tokenHash(pepper, f.TokenSecret), Now: now, MaxAttempts: 10, MaxSessions: 10,
		Session: tokenstore.Session{ID: "v2session", UserID: f.Alice, Hash: []byte("v2hash"), CreatedAt: now, UpdatedAt: now, Expire: now.Add(time.Hour), Provider: "token", Factors: []string{"token"}}}
	res, err := s.Exchange(ctx, x)
	must(t, err)
	if !res.OK || res.Session.ID != "v2session" {
		t.Fatalf("Exchange of the v1 token = %+v", res)
	}
	if res, err := s.Exchange(ctx, x); err != nil || res.OK || res.Reason != tokenstore.ExchangeWrongSecret {
		t.Fatalf("second Exchange = %+v, %v", res, err)
	}
	// Bob's token, minted through a provider, gives its session the
	// provider's name and subject.
	x.UserID, x.Hash, x.Session.ID, x.Session.UserID, x.Session.Hash = f.Bob, tokenHash(pepper, f.BobSecret), "bobsession", f.Bob, []byte("bobhash")
	res, err = s.Exchange(ctx, x)
	must(t, err)
	if !res.OK || res.Session.Provider != "oidc" || res.Session.ProviderUID != "bob-sub" || !slices.Equal(res.Session.Factors, []string{"oidc"}) {
		t.Fatalf("Exchange of Bob's provider token = %+v", res)
	}

	ids, err := s.Identities(ctx, f.Bob)
	must(t, err)
	if len(ids) != 1 || ids[0].Subject != "bob-sub" || !ids[0].EmailVerified || ids[0].Claims["groups"] == nil {
		t.Fatalf("Identities = %+v", ids)
	}
	key, err := s.KeyByHash(ctx, sha256Of(f.APIKey))
	must(t, err)
	if key.ID != f.APIKeyID || !key.HasScope("users.read") {
		t.Fatalf("KeyByHash = %+v", key)
	}
	// A first key is no longer possible: one is held.
	if made, err := s.CreateKey(ctx, tokenstore.APIKey{ID: "k2", Hash: sha256Of("k2")}, true); err != nil || made {
		t.Fatalf("CreateKey(first) on a store with a key = %v, %v", made, err)
	}

	v, err := s.KVGet(ctx, "plugin", "plain", now)
	must(t, err)
	if string(v) != "value" {
		t.Fatalf("KVGet = %q", v)
	}
	if _, err := s.KVGet(ctx, "plugin", "ttl", f.Now.Add(25*time.Hour)); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("KVGet of an expired v1 value = %v", err)
	}
	if n, err := s.KVAdd(ctx, "plugin", "counter", 1, now, time.Time{}); err != nil || n != 42 {
		t.Fatalf("KVAdd = %d, %v", n, err)
	}
	start := f.Now.Truncate(time.Hour)
	if n, err := s.Hit(ctx, "route:ip", start, start.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("Hit in the v1 counter's window = %d, %v", n, err)
	}
	if !bytes.Equal(v1Pepper(t, s), pepper) {
		t.Fatal("the pepper changed")
	}
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
