package tokenstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The bounds of a JWT's life, as Appwrite's createJWT: at most an hour,
// 15 minutes by default.
const (
	MaxJWTDuration     = time.Hour
	DefaultJWTDuration = 15 * time.Minute
)

const metaSigningKeys = "signing_keys"

// RetiredKeyLife is how long a retired signing key keeps verifying and
// stays published: the longest JWT's life, plus a margin for replicas
// that go on signing with it until they next read the keys (the daemon
// reloads them every minute), so a JWT such a replica signs just after a
// rotation elsewhere lives its whole life.
const RetiredKeyLife = MaxJWTDuration + 5*time.Minute

// signingKey is one Ed25519 key as stored.
type signingKey struct {
	ID      string    `json:"kid"`
	Seed    []byte    `json:"seed"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"` // no longer signs; published until Retired+RetiredKeyLife
}

type signingKeys struct {
	Current string       `json:"current"`
	Keys    []signingKey `json:"keys"`
}

// keyRing is the loaded form of signingKeys.
type keyRing struct {
	current string
	private map[string]ed25519.PrivateKey
	header  map[string]string // kid -> encoded JWT header
	jwks    []byte
}

func newSigningKey(now time.Time) (signingKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return signingKey{}, err
	}
	return signingKey{ID: randomHex(16), Seed: seed, Created: now}, nil
}

// ReloadSigningKeys reads the signing keys again, so a replica picks up a
// rotation made elsewhere.
func (c *Core) ReloadSigningKeys(ctx context.Context) error {
	var raw []byte
	err := c.meta(ctx, func(tx MetaTx) (err error) {
		raw, err = c.getSecret(tx, metaSigningKeys)
		return err
	})
	if err != nil {
		return fmt.Errorf("reload signing keys: %w", err)
	}
	return c.setKeyRing(raw)
}

func (c *Core) setKeyRing(raw []byte) error {
	var ks signingKeys
	if err := json.Unmarshal(raw, &ks); err != nil {
		return fmt.Errorf("decode signing keys: %w", err)
	}
	now := c.now()
	ring := &keyRing{current: ks.Current, private: map[string]ed25519.PrivateKey{}, header: map[string]string{}}
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range ks.Keys {
		if !k.Retired.IsZero() && now.After(k.Retired.Add(RetiredKeyLife)) {
			continue
		}
		priv := ed25519.NewKeyFromSeed(k.Seed)
		ring.private[k.ID] = priv
		ring.header[k.ID] = b64(mustJSON(map[string]string{"alg": "EdDSA", "kid": k.ID, "typ": "JWT"}))
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: b64(priv.Public().(ed25519.PublicKey)), Kid: k.ID, Alg: "EdDSA", Use: "sig"})
	}
	if _, ok := ring.private[ks.Current]; !ok {
		return errors.New("signing keys: the current key is missing")
	}
	ring.jwks = mustJSON(set)
	c.signMu.Lock()
	c.keys = ring
	c.signMu.Unlock()
	return nil
}

// RotateSigningKey makes a new current signing key. The old keys keep
// verifying (and stay in the JWKS) until every JWT they signed has expired.
func (c *Core) RotateSigningKey(ctx context.Context) (string, error) {
	now := c.now()
	fresh, err := newSigningKey(now)
	if err != nil {
		return "", err
	}
	var raw []byte
	err = c.meta(ctx, func(tx MetaTx) error {
		var ks signingKeys
		plain, err := c.getSecret(tx, metaSigningKeys)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(plain, &ks); err != nil {
			return fmt.Errorf("decode signing keys: %w", err)
		}
		kept := ks.Keys[:0:0]
		for _, k := range ks.Keys {
			if k.Retired.IsZero() {
				k.Retired = now
			}
			if now.Before(k.Retired.Add(RetiredKeyLife)) {
				kept = append(kept, k)
			}
		}
		ks.Keys = append(kept, fresh)
		ks.Current = fresh.ID
		raw = mustJSON(ks)
		return c.putSecret(tx, metaSigningKeys, raw)
	})
	if err != nil {
		return "", err
	}
	return fresh.ID, c.setKeyRing(raw)
}

// JWKS returns the JSON Web Key Set of the public signing keys.
func (c *Core) JWKS() []byte {
	c.signMu.RLock()
	defer c.signMu.RUnlock()
	return c.keys.jwks
}

// JWTClaims are the claims of a session JWT: Appwrite's userId and
// sessionId, plus the registered sub, iat and exp.
type JWTClaims struct {
	UserID    string `json:"userId"`
	SessionID string `json:"sessionId"`
	Subject   string `json:"sub"`
	IssuedAt  int64  `json:"iat"`
	Expires   int64  `json:"exp"`
}

// IssueJWT signs a JWT for a session, valid for d (0..1h; 0 is the default
// of 15 minutes). It dies with the session.
func (c *Core) IssueJWT(s Session, d time.Duration) (string, error) {
	if d < 0 || d > MaxJWTDuration {
		return "", &ArgumentError{Param: "duration", Reason: "Value must be a valid range between 0 and 3,600"}
	}
	if d == 0 {
		d = DefaultJWTDuration
	}
	now := c.now()
	claims := JWTClaims{UserID: s.UserID, SessionID: s.ID, Subject: s.UserID, IssuedAt: now.Unix(), Expires: now.Add(d).Unix()}
	c.signMu.RLock()
	ring := c.keys
	c.signMu.RUnlock()
	signed := ring.header[ring.current] + "." + b64(mustJSON(claims))
	return signed + "." + b64(ed25519.Sign(ring.private[ring.current], []byte(signed))), nil
}

// VerifyJWT checks a session JWT (signature, expiry with no leeway, an age
// of at most an hour) and that its session is still live; it returns the
// user and session, or ErrJWTInvalid. A JWT whose session is gone gives
// ErrSessionNotFound.
func (c *Core) VerifyJWT(ctx context.Context, token string) (User, Session, error) {
	claims, err := c.parseJWT(ctx, token)
	if err != nil {
		return User{}, Session{}, err
	}
	var (
		u User
		s Session
	)
	err = c.call(ctx, "session", func(ctx context.Context) (err error) {
		s, err = c.store.Session(ctx, claims.UserID, claims.SessionID)
		return err
	})
	if err == nil && (s.UserID != claims.UserID || c.now().After(s.Expire)) {
		err = ErrSessionNotFound
	}
	if err == nil {
		err = c.call(ctx, "user", func(ctx context.Context) (err error) { u, err = c.store.User(ctx, s.UserID); return err })
		if errors.Is(err, ErrUserNotFound) {
			err = ErrSessionNotFound
		}
	}
	if err != nil {
		return User{}, Session{}, err
	}
	return u, s, nil
}

func (c *Core) parseJWT(ctx context.Context, token string) (JWTClaims, error) {
	var claims JWTClaims
	head, rest, ok1 := strings.Cut(token, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return claims, ErrJWTInvalid
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := unb64JSON(head, &h); err != nil || h.Alg != "EdDSA" {
		return claims, ErrJWTInvalid
	}
	rawSig, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return claims, ErrJWTInvalid
	}
	pub, ok := c.publicKey(h.Kid)
	if !ok {
		// Perhaps a key rotated in by another replica.
		if pub, ok = c.reloadForKid(ctx, h.Kid); !ok {
			return claims, ErrJWTInvalid
		}
	}
	if !ed25519.Verify(pub, []byte(token[:len(head)+1+len(body)]), rawSig) {
		return claims, ErrJWTInvalid
	}
	if err := unb64JSON(body, &claims); err != nil {
		return claims, ErrJWTInvalid
	}
	now := c.now().Unix()
	if claims.Expires <= now || claims.IssuedAt > now+1 || now-claims.IssuedAt > int64(MaxJWTDuration/time.Second) {
		return claims, ErrJWTInvalid
	}
	return claims, nil
}

// UnknownKidInterval is how often, at most, a JWT whose kid the core does
// not know makes it read the signing keys again: anyone can send such JWTs,
// as many as they like, so they share one read a second (a negative
// cache), whatever their kids.
const UnknownKidInterval = time.Second

// reloadForKid reads the signing keys again for a JWT whose kid is not
// among them, unless an unknown kid did so less than UnknownKidInterval
// ago, and returns the kid's public key if it is there now. Concurrent
// callers wait for one read rather than each making their own.
func (c *Core) reloadForKid(ctx context.Context, kid string) (ed25519.PublicKey, bool) {
	c.kidMu.Lock()
	defer c.kidMu.Unlock()
	if pub, ok := c.publicKey(kid); ok {
		return pub, true // read in by the caller before us
	}
	now := time.Now() // the wall clock, not the core's: this paces reads
	if !c.kidRead.IsZero() && now.Sub(c.kidRead) < UnknownKidInterval {
		return nil, false
	}
	c.kidRead = now
	if c.ReloadSigningKeys(ctx) != nil {
		return nil, false
	}
	return c.publicKey(kid)
}

func (c *Core) publicKey(kid string) (ed25519.PublicKey, bool) {
	c.signMu.RLock()
	defer c.signMu.RUnlock()
	priv, ok := c.keys.private[kid]
	if !ok {
		return nil, false
	}
	return priv.Public().(ed25519.PublicKey), true
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64JSON(s string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
