package main

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// RFC 6238 Appendix B, SHA-1 rows (8 digits there; the last 6 here).
func TestRFC6238Vectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	for unix, want := range map[int64]string{
		59: "94287082", 1111111109: "07081804", 1111111111: "14050471",
		1234567890: "89005924", 2000000000: "69279037", 20000000000: "65353130",
	} {
		if got := hotp(secret, uint64(unix/30), 8); got != want {
			t.Errorf("T=%d: %s, want %s", unix, got, want)
		}
		if got := hotp(secret, uint64(unix/30), 6); got != want[2:] {
			t.Errorf("T=%d (6 digits): %s, want %s", unix, got, want[2:])
		}
	}
}

// clock is a settable time for the verifier under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newAt(c *clock) sdk.Factory {
	return func() sdk.Verifier { return &TOTP{now: c.now} }
}

func body(v any) json.RawMessage {
	raw, _ := json.Marshal(v)
	return raw
}

// enroll enrolls user through the harness and returns the secret.
func enroll(t *testing.T, c providertest.Conn, user string) []byte {
	t.Helper()
	res, err := c.Enroll(context.Background(), sdk.EnrollRequest{UserID: user, Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Subject != user {
		t.Fatalf("subject %q, want %q", res.Subject, user)
	}
	var e Enrolled
	if err := json.Unmarshal(res.Data, &e); err != nil {
		t.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
	if err != nil || len(secret) != secretSize {
		t.Fatalf("secret %q: %v", e.Secret, err)
	}
	return secret
}

func code(secret []byte, at time.Time) string { return hotp(secret, uint64(at.Unix()/30), digits) }

func TestEnrollAndVerify(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	c, kv := providertest.Connect(t, newAt(clk), map[string]any{"issuer": "MyApp"})
	ctx := context.Background()

	res, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: json.RawMessage(`{"account":"alice@example.com"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var e Enrolled
	_ = json.Unmarshal(res.Data, &e)
	u, err := url.Parse(e.OTPAuthURL)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/MyApp:alice@example.com" {
		t.Fatalf("otpauth url %q", e.OTPAuthURL)
	}
	q := u.Query()
	if q.Get("secret") != e.Secret || q.Get("issuer") != "MyApp" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Fatalf("otpauth query %v", q)
	}
	if _, err := kv.Get(ctx, "secret/u1"); err != nil {
		t.Fatalf("secret not in the host KV: %v", err)
	}

	secret := enroll(t, c, "u2")
	id, err := c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "u2", Code: code(secret, clk.now())})})
	if err != nil || id.Subject != "u2" {
		t.Fatalf("verify: %+v %v", id, err)
	}

	// Replay of the same code, even a step later (still in the window).
	clk.add(30 * time.Second)
	_, err = c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "u2", Code: code(secret, clk.now().Add(-30*time.Second))})})
	if !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("replayed code: %v", err)
	}
	// The current step's code is still fresh.
	if _, err := c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "u2", Code: code(secret, clk.now())})}); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
	// Out of the window.
	if _, err := c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "u2", Code: code(secret, clk.now().Add(-5*time.Minute))})}); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("old code: %v", err)
	}
	// Unknown user: the same answer as a wrong code.
	_, err = c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "nobody", Code: "123456"})})
	if !errors.Is(err, sdk.ErrInvalidCredentials) || err.Error() != "invalid code: invalid credentials" {
		t.Fatalf("unknown user: %v", err)
	}
	// Malformed requests.
	for _, p := range []string{`{"userId":"u2","code":"12345"}`, `{"userId":"u2","code":"abcdef"}`, `{"code":"123456"}`, `[]`, `nope`} {
		if _, err := c.Verify(ctx, sdk.Request{Payload: json.RawMessage(p)}); !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Errorf("Verify(%s): %v", p, err)
		}
	}
	// Used codes are recorded with a TTL, not forever.
	var used []string
	for _, k := range kv.Keys() {
		if strings.HasPrefix(k, "used/u2/") {
			used = append(used, k)
		}
	}
	if len(used) != 2 {
		t.Fatalf("used-code records: %v", used)
	}
}

func TestConcurrentUseOfOneCode(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	c, _ := providertest.Connect(t, newAt(clk), map[string]any{"issuer": "MyApp"})
	secret := enroll(t, c, "u1")
	p := body(VerifyPayload{UserID: "u1", Code: code(secret, clk.now())})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Verify(context.Background(), sdk.Request{Payload: p}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("one code verified %d times", wins)
	}
}

func TestThrottle(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	c, _ := providertest.Connect(t, newAt(clk), map[string]any{"issuer": "MyApp", "max_failures": 3})
	secret := enroll(t, c, "u1")
	good := code(secret, clk.now())
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	for range 3 {
		if _, err := c.Verify(context.Background(), sdk.Request{Payload: body(VerifyPayload{UserID: "u1", Code: bad})}); !errors.Is(err, sdk.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := c.Verify(context.Background(), sdk.Request{Payload: body(VerifyPayload{UserID: "u1", Code: good})}); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("throttled user verified: %v", err)
	}
}

func TestConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  string
		want string
	}{
		"no issuer":   {`{}`, "config: issuer: is required"},
		"bad skew":    {`{"issuer":"x","skew":3}`, "config: skew: must be 0, 1 or 2"},
		"unknown key": {`{"issuer":"x","digits":8}`, "config: digits: unknown key"},
		"wrong type":  {`{"issuer":1}`, "config: issuer: want a string"},
	} {
		t.Run(name, func(t *testing.T) {
			c := providertest.Open(t, New)
			err := c.Configure(context.Background(), json.RawMessage(tc.cfg))
			if !errors.Is(err, sdk.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Suite{
		New:    New,
		Config: map[string]any{"issuer": "MyApp"},
		Valid: func(t *testing.T, c providertest.Conn) json.RawMessage {
			secret := enroll(t, c, "conformance")
			return body(VerifyPayload{UserID: "conformance", Code: code(secret, time.Now())})
		},
	})
}

// TestREADMEConfig checks that the handoff config in the README's yaml
// example is one this plugin accepts, and that the README's configuration
// table names every config key and no other.
func TestREADMEConfig(t *testing.T) {
	ps := providertest.READMEProviders(t, "README.md", "") // "": a third-party plugin has no kind
	if len(ps) != 1 {
		t.Fatalf("want one totp provider, got %+v", ps)
	}
	p := ps[0]
	plugin, _ := p.Entry["plugin"].(map[string]any)
	deliver, _ := p.Entry["deliver"].(map[string]any)
	if p.Name != "totp" || plugin["path"] == nil || deliver["via"] != "response" {
		t.Fatalf("README config: %+v", p.Entry)
	}
	c := providertest.Open(t, New)
	if err := c.Configure(context.Background(), p.Config); err != nil {
		t.Fatalf("README config %s: %v", p.Config, err)
	}
	providertest.CheckConfigTable(t, "README.md", Config{})
}

// gatedKV holds every read of a secret until open is closed, so a test
// can put many verifications in flight at once, past the throttle.
type gatedKV struct {
	sdk.KV
	open    chan struct{}
	waiting atomic.Int32
}

func (k *gatedKV) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "secret/") {
		k.waiting.Add(1)
		<-k.open
	}
	return k.KV.Get(ctx, key)
}

type kvHost struct{ kv sdk.KV }

func (h kvHost) KV() sdk.KV { return h.kv }

// gated is the TOTP verifier whose host KV (the SDK's gRPC client of it)
// is gated.
type gated struct {
	*TOTP
	kv *gatedKV
}

func (g gated) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	g.kv.KV = host.KV()
	return g.TOTP.Configure(ctx, raw, kvHost{g.kv})
}

// TestParallelCodesThenRightOne is the attack of issue 9 §2 on TOTP: 40
// wrong codes at once, then the right code while they are in flight, with
// max_failures 5, through the in-process gRPC pair (the host's KV server
// and the SDK's client of it). Reading the throttle before checking and
// counting the failure after let all 41 through. Reserving each attempt
// before the check lets 5 be checked, and refuses the rest, the right code
// too.
func TestParallelCodesThenRightOne(t *testing.T) {
	const guesses, limit = 40, 5
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	kv := &gatedKV{open: make(chan struct{})}
	v := &TOTP{now: clk.now}
	c, _ := providertest.Connect(t, func() sdk.Verifier { return gated{TOTP: v, kv: kv} }, map[string]any{"issuer": "MyApp", "max_failures": limit})
	ctx := context.Background()
	secret := enroll(t, c, "u1") // writes the secret: no read, no gate
	good := code(secret, clk.now())
	bad := "000000"
	if bad == good {
		bad = "111111"
	}

	var (
		wg       sync.WaitGroup
		returned atomic.Int32
		wins     atomic.Int32
	)
	send := func(guess string) {
		wg.Go(func() {
			defer returned.Add(1)
			if _, err := c.Verify(ctx, sdk.Request{Payload: body(VerifyPayload{UserID: "u1", Code: guess})}); err == nil {
				wins.Add(1)
				if guess == good {
					t.Error("the right code, sent last, verified")
				}
			}
		})
	}
	settle := func(n int32) { // until n are held at the secret or done
		for deadline := time.Now().Add(5 * time.Second); kv.waiting.Load()+returned.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d held, %d returned; want %d", kv.waiting.Load(), returned.Load(), n)
			}
		}
	}
	for range guesses {
		send(bad)
	}
	settle(guesses)
	send(good)
	settle(guesses + 1)
	close(kv.open)
	wg.Wait()
	if wins.Load() != 0 {
		t.Fatalf("%d verifications succeeded", wins.Load())
	}
	if n := v.matches.Load(); n > limit {
		t.Fatalf("%d codes checked, want at most max_failures (%d)", n, limit)
	}
}
