package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ sdk.Verifier = (*TOTP)(nil)
	_ sdk.Enroller = (*TOTP)(nil)
)

// The RFC 6238 parameters every authenticator app defaults to.
const (
	digits     = 6
	period     = 30 * time.Second
	secretSize = 20 // bytes: 160 bits, the HMAC-SHA-1 block RFC 4226 recommends
)

// Config is the plugin's config section.
type Config struct {
	// Issuer names the service in authenticator apps ("MyApp"). Required.
	Issuer string `json:"issuer"`
	// Skew is how many 30 s steps before and after now are accepted, for
	// clock drift; 0 to 2, default 1.
	Skew *int `json:"skew"`
	// MaxFailures is how many wrong codes a user may send per 5 minutes
	// before every code is refused until the window ends; default 5.
	MaxFailures int `json:"max_failures"`
}

// TOTP verifies time-based one-time passwords. It keeps each user's
// secret, used codes and failure counts in the host KV, so it holds no
// state of its own.
type TOTP struct {
	now         func() time.Time
	issuer      string
	skew        int
	maxFailures int
	kv          sdk.KV

	// matches counts codes checked against a secret, for tests.
	matches atomic.Int64
}

// New returns an unconfigured TOTP verifier: the plugin's factory.
func New() sdk.Verifier { return &TOTP{now: time.Now} }

// Describe says what the plugin is: a direct-flow verifier that proves who
// the user is on its own.
func (v *TOTP) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "totp", Version: "1.1.0", Flows: []string{sdk.FlowDirect}, ProvesIdentity: true}, nil
}

// Configure reads the config strictly (unknown keys are errors naming the
// key) and keeps the host KV.
func (v *TOTP) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, &sdk.ConfigError{Key: "issuer", Message: "is required (the name shown in authenticator apps)"})
	}
	skew := 1
	if cfg.Skew != nil {
		skew = *cfg.Skew
	}
	if skew < 0 || skew > 2 {
		errs = append(errs, &sdk.ConfigError{Key: "skew", Message: "must be 0, 1 or 2"})
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 5
	}
	if cfg.MaxFailures < 0 {
		errs = append(errs, &sdk.ConfigError{Key: "max_failures", Message: "must be positive"})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.issuer, v.skew, v.maxFailures, v.kv = cfg.Issuer, skew, cfg.MaxFailures, host.KV()
	return nil
}

// EnrollPayload is the body of POST /v1/users/{userId}/providers/{name}.
type EnrollPayload struct {
	// Account labels the entry in the authenticator app; default the user id.
	Account string `json:"account"`
}

// Enrolled is what Enroll returns to the caller, once: show otpauth_url as
// a QR code.
type Enrolled struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauth_url"`
}

// Enroll creates (or replaces) the user's secret and returns it. The
// identity subject is the user id.
func (v *TOTP) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	var p EnrollPayload
	if err := readPayload(req.Payload, &p); err != nil {
		return sdk.EnrollResult{}, err
	}
	if err := checkUserID(req.UserID); err != nil {
		return sdk.EnrollResult{}, err
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return sdk.EnrollResult{}, fmt.Errorf("generate secret: %w", sdk.ErrInternal)
	}
	if err := v.kv.Put(ctx, secretKey(req.UserID), secret, 0); err != nil {
		return sdk.EnrollResult{}, fmt.Errorf("store secret: %w", err)
	}
	account := p.Account
	if account == "" {
		account = req.UserID
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	u := url.URL{
		Scheme: "otpauth", Host: "totp", Path: "/" + v.issuer + ":" + account,
		RawQuery: url.Values{
			"secret": {enc}, "issuer": {v.issuer}, "algorithm": {"SHA1"},
			"digits": {strconv.Itoa(digits)}, "period": {strconv.Itoa(int(period.Seconds()))},
		}.Encode(),
	}
	data, err := json.Marshal(Enrolled{Secret: enc, OTPAuthURL: u.String()})
	if err != nil {
		return sdk.EnrollResult{}, fmt.Errorf("encode result: %w", sdk.ErrInternal)
	}
	return sdk.EnrollResult{Subject: req.UserID, Data: data}, nil
}

// VerifyPayload is the body of POST /v1/providers/{name}/verify.
type VerifyPayload struct {
	UserID string `json:"userId"`
	Code   string `json:"code"`
}

// errInvalidCode is the one answer to a wrong code, an unknown user, a
// replayed code and a throttled user alike, so the answer tells nothing.
var errInvalidCode = fmt.Errorf("invalid code: %w", sdk.ErrInvalidCredentials)

// Verify checks {userId, code} and proves the identity userId. A code is
// good once: it is recorded as used in the KV until its step can no longer
// be accepted.
func (v *TOTP) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	var p VerifyPayload
	if err := readPayload(req.Payload, &p); err != nil {
		return sdk.Identity{}, err
	}
	if err := checkUserID(p.UserID); err != nil {
		return sdk.Identity{}, err
	}
	if len(p.Code) != digits || !allDigits(p.Code) {
		return sdk.Identity{}, fmt.Errorf("code must be %d digits: %w", digits, sdk.ErrInvalidRequest)
	}
	if err := v.reserve(ctx, p.UserID); err != nil {
		return sdk.Identity{}, err
	}
	id, err := v.check(ctx, p)
	switch {
	case err == nil:
		// The reservation goes with the rest of the count.
		_ = v.kv.Delete(ctx, failKey(p.UserID))
	case !errors.Is(err, errWrongCode):
		v.unreserve(ctx, p.UserID) // no code was wrong: give the attempt back
	}
	if errors.Is(err, errWrongCode) || errors.Is(err, errReplayed) {
		return sdk.Identity{}, errInvalidCode
	}
	return id, err
}

// errWrongCode and errReplayed are check's answers, both turned into
// errInvalidCode; only a wrong code (or an unknown user) keeps its attempt.
var (
	errWrongCode = errors.New("wrong code")
	errReplayed  = errors.New("replayed code")
)

// check matches the code against the user's secret and records it as used.
func (v *TOTP) check(ctx context.Context, p VerifyPayload) (sdk.Identity, error) {
	secret, err := v.kv.Get(ctx, secretKey(p.UserID))
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.Identity{}, errWrongCode
	}
	if err != nil {
		return sdk.Identity{}, fmt.Errorf("read secret: %w", err)
	}
	now := v.now()
	v.matches.Add(1)
	step, ok := match(secret, p.Code, now, v.skew)
	if !ok {
		return sdk.Identity{}, errWrongCode
	}
	// Put-if-absent: of two requests with one code, one wins.
	until := time.Unix((step+int64(v.skew)+1)*int64(period.Seconds()), 0)
	fresh, err := v.kv.CompareAndSwap(ctx, usedKey(p.UserID, step), nil, []byte{1}, until.Sub(now)+time.Second)
	if err != nil {
		return sdk.Identity{}, fmt.Errorf("record used code: %w", err)
	}
	if !fresh {
		sdk.Logger(ctx).Warn("replayed TOTP code refused", "user", p.UserID)
		return sdk.Identity{}, errReplayed
	}
	return sdk.Identity{Subject: p.UserID}, nil
}

const failWindow = 5 * time.Minute

// reserve takes one of the user's max_failures attempts before the code is
// checked (RFC 6238 §5.2 asks for throttling). The count is the host KV's
// atomic Add, so however many codes arrive at once, at most max_failures
// are checked per window: the rest, even a right one, are refused. The
// window ends failWindow after the last counted attempt: a user already
// at the limit is refused before counting, so that attempts while
// throttled do not prolong it.
func (v *TOTP) reserve(ctx context.Context, user string) error {
	raw, err := v.kv.Get(ctx, failKey(user))
	if n, ok := sdk.DecodeCounter(raw); err == nil && ok && n >= int64(v.maxFailures) {
		return errInvalidCode
	}
	n, err := v.kv.Add(ctx, failKey(user), 1, failWindow)
	if err != nil {
		return fmt.Errorf("count attempt: %w", err)
	}
	if n > int64(v.maxFailures) {
		return errInvalidCode
	}
	return nil
}

// unreserve gives back an attempt that checked no wrong code, under a
// deadline of its own: the sign-in's may be what failed.
func (v *TOTP) unreserve(ctx context.Context, user string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = v.kv.Add(ctx, failKey(user), -1, failWindow)
}

// match finds the step within ±skew of now whose code is code.
func match(secret []byte, code string, now time.Time, skew int) (int64, bool) {
	cur := now.Unix() / int64(period.Seconds())
	found, step := 0, int64(0)
	for d := -skew; d <= skew; d++ {
		s := cur + int64(d)
		// Compare every candidate in constant time and do not stop early.
		if subtle.ConstantTimeCompare([]byte(hotp(secret, uint64(s), digits)), []byte(code)) == 1 {
			found, step = 1, s
		}
	}
	return step, found == 1
}

// hotp is RFC 4226's HOTP with HMAC-SHA-1: TOTP is hotp(secret, unix/30).
func hotp(secret []byte, counter uint64, n int) string {
	mac := hmac.New(sha1.New, secret)
	_ = binary.Write(mac, binary.BigEndian, counter)
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range n {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", n, bin%mod)
}

// readPayload decodes a JSON object payload. Unknown fields are ignored,
// so clients may send more than this plugin reads.
func readPayload(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return fmt.Errorf("payload must be a JSON object: %w", sdk.ErrInvalidRequest)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("payload: %s: %w", strings.TrimPrefix(err.Error(), "json: "), sdk.ErrInvalidRequest)
	}
	return nil
}

func checkUserID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("userId must be 1 to 128 characters: %w", sdk.ErrInvalidRequest)
	}
	return nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func secretKey(user string) string { return "secret/" + user }
func usedKey(user string, step int64) string {
	return "used/" + user + "/" + strconv.FormatInt(step, 10)
}

// failKey is the user's attempt counter (sdk.KV.Add). Version 1.0 kept
// decimal text under failures/, which lapses by its TTL.
func failKey(user string) string { return "attempts/" + user }
