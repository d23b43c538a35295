package tokenstore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// The ranges and defaults of Appwrite's custom tokens and sessions.
const (
	MinTokenLength     = 4
	MaxTokenLength     = 128
	DefaultTokenLength = 6
	MinTokenExpire     = 60 * time.Second
	MaxTokenExpire     = 31536000 * time.Second
	DefaultTokenExpire = 900 * time.Second

	DefaultMaxAttempts     = 10
	DefaultMaxOutstanding  = 5
	MaxMaxOutstanding      = 100
	DefaultSessionDuration = 31536000 * time.Second
	DefaultMaxSessions     = 10

	// sessionSecretLength is the hex length of a session secret.
	sessionSecretLength = 256
)

// Options tune the core. The zero value takes every default.
type Options struct {
	TokenLength     int           // default secret length, 4..128
	TokenExpire     time.Duration // default token lifetime, 60s..1y
	MaxAttempts     int           // wrong guesses a token faces before it burns
	MaxOutstanding  int           // live tokens per user, 1..100; minting more evicts the oldest
	SessionDuration time.Duration // session lifetime
	MaxSessions     int           // sessions per user; the oldest go first; <0 unlimited
	// Pepper keys the HMAC of token secrets. Empty: the store's own,
	// generated at the first start.
	Pepper []byte
	// Sealer encrypts the secrets the core keeps in the store (the pepper,
	// the signing keys). Nil keeps them in plain text, and a store whose
	// secrets are sealed then fails to open with ErrSealed.
	Sealer *Sealer
	// StoreTimeout is the deadline of every store call the core makes
	// (default DefaultStoreTimeout), whatever the caller's context says.
	StoreTimeout time.Duration
	// KeyCacheTTL keeps an API key read from the store in memory for
	// that long (see AuthenticateKey); zero reads the store for every
	// request.
	KeyCacheTTL time.Duration
	// Observe, when set, is told of every store call the core makes: the
	// step's name, how long it took and its error (nil on success).
	Observe func(step string, took time.Duration, err error)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.TokenLength == 0 {
		o.TokenLength = DefaultTokenLength
	}
	if o.TokenExpire == 0 {
		o.TokenExpire = DefaultTokenExpire
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxOutstanding == 0 {
		o.MaxOutstanding = DefaultMaxOutstanding
	}
	if o.SessionDuration == 0 {
		o.SessionDuration = DefaultSessionDuration
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = DefaultStoreTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Core applies handoff's rules on top of a Store.
type Core struct {
	store  Store
	opts   Options
	pepper []byte

	signMu sync.RWMutex
	keys   *keyRing

	kidMu   sync.Mutex // one unknown-kid read of the signing keys at a time
	kidRead time.Time  // when an unknown kid last made the core read them

	keyCache keyCache
}

// New opens the core on store: it loads (or creates, at the first start)
// the pepper and the JWT signing key.
func New(ctx context.Context, store Store, opts Options) (*Core, error) {
	opts.setDefaults()
	if err := checkRange("length", opts.TokenLength, MinTokenLength, MaxTokenLength); err != nil {
		return nil, err
	}
	if err := checkRange("expire", int(opts.TokenExpire/time.Second), int(MinTokenExpire/time.Second), int(MaxTokenExpire/time.Second)); err != nil {
		return nil, err
	}
	if err := checkRange("max_outstanding", opts.MaxOutstanding, 1, MaxMaxOutstanding); err != nil {
		return nil, err
	}
	c := &Core{store: store, opts: opts, pepper: opts.Pepper, keyCache: keyCache{ttl: opts.KeyCacheTTL}}
	first, err := newSigningKey(c.now())
	if err != nil {
		return nil, err
	}
	makers := map[string]func() ([]byte, error){
		metaSigningKeys: func() ([]byte, error) {
			return json.Marshal(signingKeys{Current: first.ID, Keys: []signingKey{first}})
		},
	}
	if len(c.pepper) == 0 {
		makers[metaPepper] = func() ([]byte, error) { return randomBytes(32) }
	}
	secrets, err := c.secretsOnce(ctx, makers)
	if err != nil {
		return nil, fmt.Errorf("load the pepper and signing keys: %w", err)
	}
	if len(c.pepper) == 0 {
		c.pepper = secrets[metaPepper]
	}
	if err := c.setKeyRing(secrets[metaSigningKeys]); err != nil {
		return nil, err
	}
	return c, nil
}

// Store returns the store under the core.
func (c *Core) Store() Store { return c.store }

// Options returns the effective options.
func (c *Core) Options() Options { return c.opts }

// now is the clock at the precision every store keeps (PostgreSQL's
// microseconds), so a record reads back as it was written.
func (c *Core) now() time.Time { return c.opts.Now().UTC().Truncate(time.Microsecond) }

// Sweep removes up to limit expired tokens, sessions and plugin values.
func (c *Core) Sweep(ctx context.Context, limit int) (int, error) {
	var n int
	err := c.call(ctx, "sweep", func(ctx context.Context) (err error) {
		n, err = c.store.Sweep(ctx, c.now(), limit)
		return err
	})
	return n, err
}

// RunSweeper sweeps every interval until ctx ends, in batches so one sweep
// never holds the store for long.
func (c *Core) RunSweeper(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := c.Sweep(ctx, 1000)
			if err != nil {
				if onErr != nil && ctx.Err() == nil {
					onErr(err)
				}
				break
			}
			if n < 1000 {
				break
			}
		}
	}
}

// NewID returns a 20-character id shaped like Appwrite's ID.unique(): 13
// hex characters of time, then 7 random ones, so ids sort roughly by age.
func NewID() string {
	now := time.Now()
	var b [20]byte
	hex.Encode(b[:8], binary.BigEndian.AppendUint32(nil, uint32(now.Unix())))
	us := strconv.FormatInt(int64(now.Nanosecond()/1000), 16)
	for i := 0; i < 5-len(us); i++ {
		b[8+i] = '0'
	}
	copy(b[13-len(us):13], us)
	copy(b[13:], randomHex(7))
	return string(b[:])
}

// randomHex returns n lowercase hex characters from crypto/rand, as
// Appwrite's Proofs\Token does: ceil(n/2) random bytes, cut to n.
func randomHex(n int) string {
	raw := make([]byte, (n+1)/2)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(raw)[:n]
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := rand.Read(b)
	return b, err
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func (c *Core) tokenMAC(secret string) []byte {
	m := hmac.New(sha256.New, c.pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

func checkRange(param string, v, lo, hi int) error {
	if v < lo || v > hi {
		return RangeError(param, lo, hi)
	}
	return nil
}

// RangeError is the error of a parameter outside lo..hi, worded as
// Appwrite's Range validator.
func RangeError(param string, lo, hi int) *ArgumentError {
	return &ArgumentError{Param: param, Reason: fmt.Sprintf("Value must be a valid range between %s and %s", thousands(lo), thousands(hi))}
}

// thousands formats n as PHP's number_format does: 31536000 -> 31,536,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if len(s) <= 3 {
		return s
	}
	var out []byte
	pre := len(s) % 3
	if pre > 0 {
		out = append(out, s[:pre]...)
	}
	for i := pre; i < len(s); i += 3 {
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, s[i:i+3]...)
	}
	return string(out)
}

func mustJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("tokenstore: marshal: " + err.Error()) // only plain structs are marshalled
	}
	return raw
}
