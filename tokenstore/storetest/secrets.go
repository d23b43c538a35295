package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var secretTests = []test{
	{"SealedAtRest", testSecretsSealed},
	{"Tampered", testSecretsTampered},
	{"RotateKeys", testSecretsRotate},
	{"MigratePlain", testSecretsMigrate},
	{"UnknownKidReads", testUnknownKidReads},
}

// NewSealer returns a Sealer over n fresh random keys, and the keys.
func NewSealer(t testing.TB, n int) (*tokenstore.Sealer, [][]byte) {
	t.Helper()
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = make([]byte, tokenstore.SecretKeySize)
		_, _ = rand.Read(keys[i])
	}
	s, err := tokenstore.NewSealer(keys)
	must(t, "NewSealer", err)
	return s, keys
}

// Secrets opens the store's sealed pepper and signing keys with sealer
// (nil: they are plain, as before sealing) and returns every form in which a plain copy could be found: the pepper
// and each Ed25519 seed raw, in base64 (as JSON holds bytes) and in hex.
// A backend's test scans its raw file or rows for them.
func Secrets(t *testing.T, st tokenstore.Store, sealer *tokenstore.Sealer) [][]byte {
	t.Helper()
	open := func(name string) []byte {
		raw, err := metaGet(st, name)
		must(t, "Get meta "+name, err)
		if sealer == nil {
			return raw
		}
		plain, _, err := sealer.Open("meta", []byte(name), raw)
		must(t, "open meta "+name, err)
		return plain
	}
	secrets := [][]byte{open("pepper")}
	var ks struct {
		Keys []struct{ Seed []byte }
	}
	must(t, "decode signing keys", json.Unmarshal(open("signing_keys"), &ks))
	for _, k := range ks.Keys {
		secrets = append(secrets, k.Seed)
	}
	var needles [][]byte
	for _, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("a secret of %d bytes", len(s))
		}
		needles = append(needles, s, []byte(base64.StdEncoding.EncodeToString(s)), []byte(hex.EncodeToString(s)))
	}
	return needles
}

// wantNoSecret fails t if any of needles is in the store as its Tx reads
// it (a backend's own test also scans the raw bytes under it).
func wantNoSecret(t *testing.T, e *env, needles [][]byte) {
	t.Helper()
	for _, n := range needles {
		if r, ok := findBytes(e.dump(), n); ok {
			t.Fatalf("a secret is readable without the key, in %s/%q", r.Kind, r.Key)
		}
	}
}

// testSecretsSealed: with a Sealer, neither the pepper nor any signing
// seed is in the store in plain text, and without the key (none, or
// another) the store does not open.
func testSecretsSealed(t *testing.T, s *suite) {
	sealer, _ := NewSealer(t, 1)
	e := s.env(t, tokenstore.Options{Sealer: sealer})
	_, err := e.core.RotateSigningKey(e.ctx) // a second seed, written by a rotation
	must(t, "RotateSigningKey", err)
	needles := Secrets(t, e.store, sealer)
	if len(needles) != 9 {
		t.Fatalf("found %d forms of secrets, want 9 (pepper and two seeds, three forms each)", len(needles))
	}
	wantNoSecret(t, e, needles)

	e.user("u1")
	sess, _ := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	replica := e.replica(tokenstore.Options{Sealer: sealer})
	_, _, err = replica.core.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT on a replica with the key", err)

	other, _ := NewSealer(t, 1)
	for name, opts := range map[string]tokenstore.Options{
		"no key":      {},
		"another key": {Sealer: other},
	} {
		_, err := tokenstore.New(e.ctx, e.store, opts)
		wantIs(t, "New with "+name, err, tokenstore.ErrSealed)
	}
}

// testSecretsTampered: a sealed secret changed by a bit, moved to another
// key, or replaced by a plain value does not open.
func testSecretsTampered(t *testing.T, s *suite) {
	sealer, _ := NewSealer(t, 1)
	cases := []struct {
		name   string
		change func(tx tokenstore.MetaTx) error
		want   error
		reload bool // the signing keys changed: a running core's reload fails too
	}{
		{"bit flipped", func(tx tokenstore.MetaTx) error {
			v, err := tx.Get("pepper")
			if err != nil {
				return err
			}
			v = bytes.Clone(v)
			v[len(v)-20] ^= 1
			return tx.Put("pepper", v)
		}, tokenstore.ErrSealBroken, false},
		{"key id changed", func(tx tokenstore.MetaTx) error {
			v, err := tx.Get("pepper")
			if err != nil {
				return err
			}
			v = bytes.Clone(v)
			v[5] ^= 1
			return tx.Put("pepper", v)
		}, tokenstore.ErrSealed, false},
		{"pepper moved to the signing keys", func(tx tokenstore.MetaTx) error {
			v, err := tx.Get("pepper")
			if err != nil {
				return err
			}
			return tx.Put("signing_keys", bytes.Clone(v))
		}, tokenstore.ErrSealBroken, true},
		{"signing keys replaced by plain ones", func(tx tokenstore.MetaTx) error {
			seed := make([]byte, ed25519.SeedSize)
			plain := fmt.Sprintf(`{"current":"evil","keys":[{"kid":"evil","seed":%q,"created":"2026-01-01T00:00:00Z"}]}`, base64.StdEncoding.EncodeToString(seed))
			return tx.Put("signing_keys", []byte(plain))
		}, tokenstore.ErrSealBroken, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := s.env(t, tokenstore.Options{Sealer: sealer})
			must(t, "tamper", e.store.Meta(e.ctx, tc.change))
			_, err := tokenstore.New(e.ctx, e.store, tokenstore.Options{Sealer: sealer})
			wantIs(t, "New after tampering", err, tc.want)
			if tc.reload {
				wantIs(t, "ReloadSigningKeys after tampering", e.core.ReloadSigningKeys(e.ctx), tc.want)
			}
		})
	}
}

// testSecretsRotate: a new key put first in the key file opens what the
// old one sealed; ResealSecrets seals everything under it, after which the
// old key alone no longer opens the store and the new one alone does.
func testSecretsRotate(t *testing.T, s *suite) {
	old, oldKeys := NewSealer(t, 1)
	e := s.env(t, tokenstore.Options{Sealer: old})
	e.user("u1")
	_, secret := e.mint("u1")
	sess, _ := e.session("u1")
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)

	_, newKeys := NewSealer(t, 1)
	both, err := tokenstore.NewSealer([][]byte{newKeys[0], oldKeys[0]})
	must(t, "NewSealer", err)
	rotated := e.replica(tokenstore.Options{Sealer: both})
	n, err := rotated.core.ResealSecrets(e.ctx)
	must(t, "ResealSecrets", err)
	if n != 2 {
		t.Fatalf("ResealSecrets = %d, want 2 (the pepper and the signing keys)", n)
	}
	if n, err := rotated.core.ResealSecrets(e.ctx); err != nil || n != 0 {
		t.Fatalf("ResealSecrets again = %d, %v, want 0", n, err)
	}

	_, err = tokenstore.New(e.ctx, e.store, tokenstore.Options{Sealer: old})
	wantIs(t, "New with the old key alone", err, tokenstore.ErrSealed)
	fresh, err := tokenstore.NewSealer(newKeys)
	must(t, "NewSealer", err)
	after := e.replica(tokenstore.Options{Sealer: fresh})
	_, _, err = after.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange of a token minted before the rotation (the pepper must be kept)", err)
	_, _, err = after.core.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT of a JWT signed before the rotation", err)
}

// testSecretsMigrate: a store written before sealing existed (plain
// pepper and signing keys) is sealed in place when a core with a Sealer
// opens it, by one of several replicas starting at once, and its tokens
// and JWTs stay good.
func testSecretsMigrate(t *testing.T, s *suite) {
	plain := s.env(t, tokenstore.Options{}) // as every release before sealing
	plain.user("u1")
	_, secret := plain.mint("u1")
	sess, _ := plain.session("u1")
	jwt, err := plain.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	pepper, err := metaGet(plain.store, "pepper")
	must(t, "Get pepper", err)
	if len(pepper) != 32 {
		t.Fatalf("plain pepper of %d bytes", len(pepper))
	}

	sealer, _ := NewSealer(t, 1)
	var wg sync.WaitGroup
	cores := make([]*tokenstore.Core, 4)
	for i := range cores {
		wg.Go(func() {
			c, err := tokenstore.New(plain.ctx, plain.store, tokenstore.Options{Sealer: sealer, Now: plain.clock.Now})
			if err != nil {
				t.Errorf("New %d on a plain store: %v", i, err)
			}
			cores[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	needles := Secrets(t, plain.store, sealer)
	if !bytes.Equal(needles[0], pepper) {
		t.Fatal("the migration changed the pepper")
	}
	wantNoSecret(t, plain, needles)
	_, _, err = cores[3].VerifyJWT(plain.ctx, jwt)
	must(t, "VerifyJWT of a JWT signed before the migration", err)
	_, _, err = cores[1].Exchange(plain.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange of a token minted before the migration", err)
	_, err = tokenstore.New(plain.ctx, plain.store, tokenstore.Options{})
	wantIs(t, "New without the key after the migration", err, tokenstore.ErrSealed)
}

// readCounter counts the Meta steps run on a Store (the signing keys
// are read in one).
type readCounter struct {
	tokenstore.Store
	n atomic.Int64
}

func (r *readCounter) Meta(ctx context.Context, fn func(tokenstore.MetaTx) error) error {
	r.n.Add(1)
	return r.Store.Meta(ctx, fn)
}

// metaGet reads the store's named value name.
func metaGet(st tokenstore.Store, name string) ([]byte, error) {
	var v []byte
	err := st.Meta(context.Background(), func(tx tokenstore.MetaTx) (err error) {
		v, err = tx.Get(name)
		v = bytes.Clone(v)
		return err
	})
	return v, err
}

// testUnknownKidReads: JWTs with kids the core does not know, from many
// goroutines, make it read the store at most once a second between them;
// a kid rotated in by a replica is still found after that second.
func testUnknownKidReads(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	counted := &readCounter{Store: e.store}
	c, err := tokenstore.New(e.ctx, counted, tokenstore.Options{Now: e.clock.Now})
	must(t, "New", err)
	counted.n.Store(0)
	body := base64.RawURLEncoding.EncodeToString([]byte(`{"userId":"u1","sessionId":"s1","sub":"u1"}`))
	sig := base64.RawURLEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := range 100 {
				kid := fmt.Sprintf("%d-%d-%s", g, i, hex.EncodeToString(randBytes(8)))
				head := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"alg":"EdDSA","kid":%q,"typ":"JWT"}`, kid))
				_, _, err := c.VerifyJWT(e.ctx, head+"."+body+"."+sig)
				if !errors.Is(err, tokenstore.ErrJWTInvalid) {
					t.Errorf("VerifyJWT with kid %s: %v, want ErrJWTInvalid", kid, err)
				}
			}
		})
	}
	wg.Wait()
	reads := counted.n.Load()
	if most := int64(time.Since(start)/tokenstore.UnknownKidInterval) + 1; reads > most {
		t.Fatalf("1000 JWTs with unknown kids made %d store reads in %v, want at most %d", reads, time.Since(start), most)
	}
	t.Logf("1000 JWTs with unknown kids: %d store reads", reads)

	time.Sleep(tokenstore.UnknownKidInterval)
	e.user("u1")
	sess, _ := e.session("u1")
	_, err = e.core.RotateSigningKey(e.ctx) // on another replica
	must(t, "RotateSigningKey", err)
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	_, _, err = c.VerifyJWT(e.ctx, jwt)
	must(t, "VerifyJWT with a kid rotated in elsewhere", err)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
