package storetest

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var keyTests = []test{
	{"CreateAuthenticate", testKeyCreate},
	{"Revoke", testKeyRevoke},
	{"Expire", testKeyExpire},
	{"FirstKeyOnce", testFirstKeyOnce},
	{"Cache", testKeyCache},
}

var jwtTests = []test{
	{"IssueVerify", testJWTIssueVerify},
	{"Tampered", testJWTTampered},
	{"Expiry", testJWTExpiry},
	{"SessionGone", testJWTSessionGone},
	{"Rotate", testJWTRotate},
}

func testKeyCreate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	k, secret, err := e.core.CreateKey(e.ctx, "ci", []string{"users.read", "users.write"}, time.Time{})
	must(t, "CreateKey", err)
	if !strings.HasPrefix(secret, tokenstore.KeyPrefix) || k.Name != "ci" || k.ID == "" {
		t.Fatalf("CreateKey = %+v, %q", k, secret)
	}
	for _, form := range []string{secret, strings.TrimPrefix(secret, tokenstore.KeyPrefix)} {
		got, err := e.core.AuthenticateKey(e.ctx, form)
		must(t, "AuthenticateKey", err)
		if got.ID != k.ID || !got.HasScope("users.write") || got.HasScope("keys.write") {
			t.Fatalf("AuthenticateKey = %+v", got)
		}
	}
	for _, bad := range []string{"", tokenstore.KeyPrefix, secret[:len(secret)-1], secret + "0", strings.ToUpper(secret)} {
		_, err := e.core.AuthenticateKey(e.ctx, bad)
		wantIs(t, "AuthenticateKey("+bad+")", err, tokenstore.ErrKeyInvalid)
	}
	k2, _, err := e.core.CreateKey(e.ctx, "other", nil, time.Time{})
	must(t, "CreateKey", err)
	keys, err := e.core.ListKeys(e.ctx)
	must(t, "ListKeys", err)
	if len(keys) != 2 || !slices.ContainsFunc(keys, func(x tokenstore.APIKey) bool { return x.ID == k.ID }) ||
		!slices.ContainsFunc(keys, func(x tokenstore.APIKey) bool { return x.ID == k2.ID }) {
		t.Fatalf("ListKeys = %+v", keys)
	}
	if r, ok := findBytes(e.dump(), []byte(strings.TrimPrefix(secret, tokenstore.KeyPrefix))); ok {
		t.Fatalf("the API key is stored in clear in bucket %s", r.Kind)
	}
}

func testKeyRevoke(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	k, secret, err := e.core.CreateKey(e.ctx, "ci", nil, time.Time{})
	must(t, "CreateKey", err)
	_, keep, err := e.core.CreateKey(e.ctx, "keep", nil, time.Time{})
	must(t, "CreateKey", err)
	must(t, "RevokeKey", e.core.RevokeKey(e.ctx, k.ID))
	_, err = e.core.AuthenticateKey(e.ctx, secret)
	wantIs(t, "AuthenticateKey of a revoked key", err, tokenstore.ErrKeyInvalid)
	_, err = e.core.AuthenticateKey(e.ctx, keep)
	must(t, "AuthenticateKey of another key", err)
	wantIs(t, "RevokeKey again", e.core.RevokeKey(e.ctx, k.ID), tokenstore.ErrNotFound)
	if keys, _ := e.core.ListKeys(e.ctx); len(keys) != 1 {
		t.Fatalf("ListKeys after a revoke lists %d keys, want 1", len(keys))
	}
}

// testKeyCache: with Options.KeyCacheTTL a key read once is not read
// again for that long. A revoke through the same core ends it at once;
// one through another core (another daemon on the database) ends it here
// once the entry is KeyCacheTTL old; an expiry is checked on every use.
func testKeyCache(t *testing.T, s *suite) {
	const ttl = time.Second
	a := s.env(t, tokenstore.Options{KeyCacheTTL: ttl})
	b := a.replica(tokenstore.Options{KeyCacheTTL: ttl})
	k, secret, err := a.core.CreateKey(a.ctx, "ci", nil, a.clock.Now().Add(time.Hour))
	must(t, "CreateKey", err)
	_, err = b.core.AuthenticateKey(b.ctx, secret)
	must(t, "AuthenticateKey", err)
	_, err = a.core.AuthenticateKey(a.ctx, secret)
	must(t, "AuthenticateKey", err)
	must(t, "RevokeKey", a.core.RevokeKey(a.ctx, k.ID))
	_, err = a.core.AuthenticateKey(a.ctx, secret)
	wantIs(t, "AuthenticateKey on the core that revoked it", err, tokenstore.ErrKeyInvalid)
	_, err = b.core.AuthenticateKey(b.ctx, secret)
	must(t, "AuthenticateKey on another core within the cache's time", err)
	b.clock.Advance(ttl)
	_, err = b.core.AuthenticateKey(b.ctx, secret)
	wantIs(t, "AuthenticateKey on another core after the cache's time", err, tokenstore.ErrKeyInvalid)

	_, secret, err = a.core.CreateKey(a.ctx, "short", nil, a.clock.Now().Add(ttl/2))
	must(t, "CreateKey", err)
	_, err = a.core.AuthenticateKey(a.ctx, secret)
	must(t, "AuthenticateKey", err)
	a.clock.Advance(ttl/2 + time.Millisecond)
	_, err = a.core.AuthenticateKey(a.ctx, secret)
	wantIs(t, "AuthenticateKey of a cached key past its expiry", err, tokenstore.ErrKeyExpired)

	// A wrong key is never cached.
	_, err = b.core.AuthenticateKey(b.ctx, "standard_"+strings.Repeat("0", 64))
	wantIs(t, "AuthenticateKey of an unknown key", err, tokenstore.ErrKeyInvalid)
}

func testKeyExpire(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	_, secret, err := e.core.CreateKey(e.ctx, "short", nil, e.clock.Now().Add(time.Hour))
	must(t, "CreateKey", err)
	e.clock.Advance(time.Hour)
	_, err = e.core.AuthenticateKey(e.ctx, secret)
	must(t, "AuthenticateKey at its expiry", err)
	e.clock.Advance(time.Second)
	_, err = e.core.AuthenticateKey(e.ctx, secret)
	wantIs(t, "AuthenticateKey after its expiry", err, tokenstore.ErrKeyExpired)
}

func testJWTIssueVerify(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	sess, _ := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q has %d parts", jwt, len(parts))
	}
	var claims tokenstore.JWTClaims
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, "decode claims", err)
	must(t, "decode claims", json.Unmarshal(raw, &claims))
	now := e.clock.Now().Unix()
	if claims.UserID != "u1" || claims.SessionID != sess.ID || claims.Subject != "u1" ||
		claims.IssuedAt != now || claims.Expires != now+int64(tokenstore.DefaultJWTDuration/time.Second) {
		t.Fatalf("claims = %+v", claims)
	}
	u, got, err := e.core.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT", err)
	if u.ID != "u1" || got.ID != sess.ID {
		t.Fatalf("VerifyJWT = user %q session %q", u.ID, got.ID)
	}
	for _, d := range []time.Duration{-time.Second, tokenstore.MaxJWTDuration + time.Second} {
		_, err := e.core.IssueJWT(sess, d)
		wantIs(t, "IssueJWT("+d.String()+")", err, tokenstore.ErrInvalidArgument)
	}
	_, err = e.core.IssueJWT(sess, tokenstore.MaxJWTDuration)
	must(t, "IssueJWT for the longest duration", err)
}

func testJWTTampered(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	sess, _ := e.session("u1")
	other, _ := e.session("u2")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	otherJWT, err := e.core.IssueJWT(other, 0)
	must(t, "IssueJWT", err)
	parts := strings.Split(jwt, ".")
	otherParts := strings.Split(otherJWT, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	forged := b64(`{"userId":"u2","sessionId":"` + other.ID + `","sub":"u2","iat":1,"exp":99999999999}`)
	for _, tc := range []struct{ name, jwt string }{
		{"flipped signature", parts[0] + "." + parts[1] + "." + flip(parts[2], 10)},
		{"flipped claims", parts[0] + "." + flip(parts[1], 5) + "." + parts[2]},
		{"forged claims", parts[0] + "." + forged + "." + parts[2]},
		{"claims of another JWT", parts[0] + "." + otherParts[1] + "." + parts[2]},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."},
		{"HS256", b64(`{"alg":"HS256","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]},
		{"unknown kid", b64(`{"alg":"EdDSA","kid":"nope","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]},
		{"two parts", parts[0] + "." + parts[1]},
		{"garbage", "a.b.c"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.core.VerifyJWT(e.ctx, tc.jwt)
			wantIs(t, "VerifyJWT", err, tokenstore.ErrJWTInvalid)
		})
	}
}

func testJWTExpiry(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	sess, _ := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, time.Minute)
	must(t, "IssueJWT", err)
	e.clock.Advance(59 * time.Second)
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT before exp", err)
	e.clock.Advance(time.Second)
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	wantIs(t, "VerifyJWT at exp", err, tokenstore.ErrJWTInvalid)
}

func testJWTSessionGone(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{SessionDuration: 10 * time.Minute})
	e.user("u1")
	sess, _ := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	must(t, "DeleteSession", e.core.DeleteSession(e.ctx, "u1", sess.ID))
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	wantIs(t, "VerifyJWT of a deleted session's JWT", err, tokenstore.ErrSessionNotFound)

	// A JWT outlives its session's expiry only on paper.
	sess, _ = e.session("u1")
	jwt, err = e.core.IssueJWT(sess, 15*time.Minute)
	must(t, "IssueJWT", err)
	e.clock.Advance(10*time.Minute + time.Second)
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	wantIs(t, "VerifyJWT of an expired session's JWT", err, tokenstore.ErrSessionNotFound)
}

// jwks returns the kids of the key set.
func jwks(t *testing.T, raw []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kty, Crv, X, Kid, Alg string
		} `json:"keys"`
	}
	must(t, "decode JWKS", json.Unmarshal(raw, &set))
	var kids []string
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.X == "" {
			t.Fatalf("JWKS key %+v", k)
		}
		kids = append(kids, k.Kid)
	}
	return kids
}

func jwtKid(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	must(t, "decode JWT header", err)
	var h struct{ Kid string }
	must(t, "decode JWT header", json.Unmarshal(raw, &h))
	return h.Kid
}

func testJWTRotate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	// A second core on the same store plays another replica.
	replica := e.replica(tokenstore.Options{})
	e.user("u1")
	sess, _ := e.session("u1")
	old, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	oldKid := jwtKid(t, old)
	if kids := jwks(t, e.core.JWKS()); !slices.Equal(kids, []string{oldKid}) {
		t.Fatalf("JWKS before rotation = %q, want [%s]", kids, oldKid)
	}
	newKid, err := e.core.RotateSigningKey(e.ctx)
	must(t, "RotateSigningKey", err)
	fresh, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	if k := jwtKid(t, fresh); k != newKid || k == oldKid {
		t.Fatalf("JWT after rotation has kid %q, want %q", k, newKid)
	}
	for _, jwt := range []string{old, fresh} {
		_, _, err := e.core.VerifyJWT(e.ctx, jwt)
		must(t, "VerifyJWT", err)
		_, _, err = replica.core.VerifyJWT(e.ctx, jwt)
		must(t, "VerifyJWT on a replica", err)
	}
	if kids := jwks(t, e.core.JWKS()); len(kids) != 2 || !slices.Contains(kids, oldKid) || !slices.Contains(kids, newKid) {
		t.Fatalf("JWKS after rotation = %q, want %s and %s", kids, oldKid, newKid)
	}
	// A JWT's longest life after the rotation, the old key still
	// verifies: a replica that had not reloaded the keys yet may have
	// signed with it.
	e.clock.Advance(tokenstore.MaxJWTDuration + time.Second)
	must(t, "ReloadSigningKeys", e.core.ReloadSigningKeys(e.ctx))
	if kids := jwks(t, e.core.JWKS()); !slices.Contains(kids, oldKid) {
		t.Fatalf("JWKS an hour after rotation = %q, want %s kept for tokenstore.RetiredKeyLife", kids, oldKid)
	}
	// Once every JWT the old key signed has expired, the next rotation
	// drops it.
	e.clock.Advance(tokenstore.RetiredKeyLife - tokenstore.MaxJWTDuration)
	third, err := e.core.RotateSigningKey(e.ctx)
	must(t, "RotateSigningKey", err)
	if kids := jwks(t, e.core.JWKS()); len(kids) != 2 || slices.Contains(kids, oldKid) || !slices.Contains(kids, third) {
		t.Fatalf("JWKS after the second rotation = %q, want %s and %s", kids, newKid, third)
	}
}

// testFirstKeyOnce: of many first starts at once on one empty store (two
// daemons, eight goroutines each), exactly one makes the first key; none
// is made once the store had one, even after it was revoked, nor on a store
// whose keys were made otherwise.
func testFirstKeyOnce(t *testing.T, s *suite) {
	a := s.env(t, tokenstore.Options{})
	b := a.replica(tokenstore.Options{})
	var mu sync.Mutex
	var made []string
	var wg sync.WaitGroup
	for i := range 16 {
		e := a
		if i%2 == 1 {
			e = b
		}
		wg.Go(func() {
			k, secret, created, err := e.core.CreateFirstKey(e.ctx, "bootstrap", []string{"users.read"})
			if err != nil {
				t.Error(err)
				return
			}
			if created {
				mu.Lock()
				made = append(made, secret)
				mu.Unlock()
				if k.ID == "" || k.Name != "bootstrap" {
					t.Errorf("first key %+v", k)
				}
			}
		})
	}
	wg.Wait()
	if len(made) != 1 {
		t.Fatalf("%d first keys made, want 1", len(made))
	}
	k, err := a.core.AuthenticateKey(a.ctx, made[0])
	must(t, "AuthenticateKey(first key)", err)
	must(t, "RevokeKey", a.core.RevokeKey(a.ctx, k.ID))
	if _, _, created, err := b.core.CreateFirstKey(b.ctx, "bootstrap", nil); err != nil || created {
		t.Fatalf("after the first key was revoked: created %v, %v; want none", created, err)
	}

	c := s.env(t, tokenstore.Options{})
	_, _, err = c.core.CreateKey(c.ctx, "ci", nil, time.Time{})
	must(t, "CreateKey", err)
	if _, _, created, err := c.core.CreateFirstKey(c.ctx, "bootstrap", nil); err != nil || created {
		t.Fatalf("on a store with a key: created %v, %v; want none", created, err)
	}
}
