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

// fileFixture is testdata/NAME.json: what v1fixture made in
// testdata/NAME.db with the code of its time.
type fileFixture struct {
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

// openFixture opens a copy of testdata/NAME.db and reads its fixture.
func openFixture(t *testing.T, name string) (*Store, fileFixture) {
	t.Helper()
	var f fileFixture
	raw, err := os.ReadFile("testdata/" + name + ".json")
	must(t, err)
	must(t, json.Unmarshal(raw, &f))
	db, err := os.ReadFile("testdata/" + name + ".db")
	must(t, err)
	path := filepath.Join(t.TempDir(), "handoff.db")
	must(t, os.WriteFile(path, db, 0o600))
	s, err := Open(path, Options{})
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, f
}

// filePepper reads the file's pepper, stored plain by a core without a
// Sealer.
func filePepper(t *testing.T, s *Store) []byte {
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

// TestOldFiles: store files written by earlier code, v1.db by the v1 core
// (layout 1) and v2.db by the build before tokens and sessions were
// stored in binary (layout 2, their JSON), open as layout 3; every record
// reads back through the typed steps, and the tokens, session and API key
// made before work.
func TestOldFiles(t *testing.T) {
	for _, name := range []string{"v1", "v2"} {
		t.Run(name, func(t *testing.T) { testOldFile(t, name) })
	}
}

func testOldFile(t *testing.T, name string) {
	s, f := openFixture(t, name)
	ctx := context.Background()
	pepper := filePepper(t, s)

	// Open moved layout 1's buckets into user_data and marked the file.
	must(t, s.b.db.View(func(btx *bbolt.Tx) error {
		for _, name := range []string{"tokens", "sessions", "sessions_hash", "user_sessions", "failures"} {
			if b := btx.Bucket([]byte(name)); b != nil && b.Stats().KeyN != 0 {
				t.Errorf("layout 1's bucket %s holds %d keys after Open", name, b.Stats().KeyN)
			}
		}
		if v := btx.Bucket([]byte("layout")).Get([]byte("version")); len(v) < headerLen || string(v[headerLen:]) != "3" {
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

	// The session opened by an old exchange authenticates.
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

	// The live token of an old mint exchanges once, and its session is
	// written in binary.
	now := f.Now.Add(5 * time.Minute)
	x := tokenstore.Exchange{UserID: f.Alice, Hash: tokenHash(pepper, f.TokenSecret), Now: now, MaxAttempts: 10, MaxSessions: 10,
		Session: tokenstore.Session{ID: "v2session", UserID: f.Alice, Hash: []byte("v2hash"), CreatedAt: now, UpdatedAt: now, Expire: now.Add(time.Hour), Provider: "token", Factors: []string{"token"}}}
	res, err := s.Exchange(ctx, x)
	must(t, err)
	if !res.OK || res.Session.ID != "v2session" {
		t.Fatalf("Exchange of the old token = %+v", res)
	}
	must(t, s.b.db.View(func(btx *bbolt.Tx) error {
		key := append([]byte(f.Alice+"\x00s"), x.Session.Hash...)
		if v := btx.Bucket([]byte("user_data")).Get(key); len(v) <= headerLen || v[headerLen] == '{' {
			t.Errorf("the new session is stored as %q, want the binary form", v)
		}
		return nil
	}))
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
		t.Fatalf("KVGet of an expired old value = %v", err)
	}
	if n, err := s.KVAdd(ctx, "plugin", "counter", 1, now, time.Time{}); err != nil || n != 42 {
		t.Fatalf("KVAdd = %d, %v", n, err)
	}
	start := f.Now.Truncate(time.Hour)
	if n, err := s.Hit(ctx, "route:ip", start, start.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("Hit in the old counter's window = %d, %v", n, err)
	}
	if !bytes.Equal(filePepper(t, s), pepper) {
		t.Fatal("the pepper changed")
	}
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
