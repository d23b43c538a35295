package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var mintTests = []test{
	{"Default", testMintDefault},
	{"Length", testMintLength},
	{"Expire", testMintExpire},
	{"UnknownUser", testMintUnknownUser},
	{"SecretNotStored", testMintSecretNotStored},
}

var exchangeTests = []test{
	{"Success", testExchangeSuccess},
	{"OnlyOnce", testExchangeOnce},
	{"Invalid", testExchangeInvalid},
	{"Expiry", testExchangeExpiry},
	{"FailuresCounted", testExchangeFailures},
	{"MaxAttemptsBurnsTokens", testExchangeMaxAttempts},
	{"MaxAttemptsOption", testExchangeMaxAttemptsOption},
	{"BurnSparesLaterTokens", testExchangeBurnSparesLater},
	{"LoweredMaxAttempts", testExchangeLoweredMaxAttempts},
	{"FailureDetail", testExchangeFailureDetail},
	{"SuccessKeepsOtherCounts", testExchangeSuccessKeepsCounts},
	{"ConcurrentGuessesBurn", testExchangeConcurrentGuesses},
	{"MaxOutstanding", testMaxOutstanding},
	{"MaxOutstandingOption", testMaxOutstandingOption},
	{"Provider", testExchangeProvider},
	{"ProviderTokensSealed", testExchangeProviderTokens},
	{"ProviderTokensNeedSealer", testExchangeProviderTokensUnsealed},
	{"ConfiguredPepper", testExchangePepper},
}

var sessionTests = []test{
	{"Cap", testSessionCap},
	{"DefaultCap", testSessionDefaultCap},
	{"Unlimited", testSessionUnlimited},
	{"List", testSessionList},
	{"Delete", testSessionDelete},
	{"DeleteAll", testSessionDeleteAll},
	{"Expiry", testSessionExpiry},
	{"AuthenticateRejects", testSessionAuthenticateBad},
	{"CreateSession", testCreateSession},
}

var lowerHex = regexp.MustCompile(`^[0-9a-f]+$`)

func testMintDefault(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	now := e.clock.Now()
	tok, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Provider: "captcha", IP: "192.0.2.1", UserAgent: "ua"})
	if len(secret) != tokenstore.DefaultTokenLength || !lowerHex.MatchString(secret) {
		t.Fatalf("secret %q: want %d lowercase hex characters", secret, tokenstore.DefaultTokenLength)
	}
	if tok.UserID != "u1" || tok.ID == "" || tok.Provider != "captcha" || tok.IP != "192.0.2.1" || tok.UserAgent != "ua" {
		t.Fatalf("token = %+v", tok)
	}
	if !tok.CreatedAt.Equal(now) || !tok.Expire.Equal(now.Add(tokenstore.DefaultTokenExpire)) {
		t.Fatalf("token created %s expires %s; want %s and %s later", tok.CreatedAt, tok.Expire, now, tokenstore.DefaultTokenExpire)
	}
	list, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("ListTokens = %+v, want the minted token", list)
	}
	// Every mint draws a new secret.
	_, again := e.mint("u1")
	_, third := e.mint("u1")
	if again == secret && third == secret {
		t.Fatalf("three mints gave the same secret %q", secret)
	}
}

func testMintLength(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	for _, tc := range []struct {
		length int
		ok     bool
	}{
		{0, true}, // the default
		{4, true},
		{6, true},
		{64, true},
		{128, true},
		{3, false},
		{129, false},
		{-1, false},
	} {
		t.Run(fmt.Sprint(tc.length), func(t *testing.T) {
			_, secret, err := e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: "u1", Length: tc.length})
			if !tc.ok {
				wantIs(t, "Mint", err, tokenstore.ErrInvalidArgument)
				return
			}
			must(t, "Mint", err)
			want := tc.length
			if want == 0 {
				want = tokenstore.DefaultTokenLength
			}
			if len(secret) != want || !lowerHex.MatchString(secret) {
				t.Fatalf("secret %q: want %d lowercase hex characters", secret, want)
			}
		})
	}
}

func testMintExpire(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	for _, tc := range []struct {
		expire time.Duration
		ok     bool
	}{
		{60 * time.Second, true},
		{900 * time.Second, true},
		{31536000 * time.Second, true},
		{59 * time.Second, false},
		{31536001 * time.Second, false},
		{1500 * time.Millisecond, false},
		{-time.Minute, false},
	} {
		t.Run(tc.expire.String(), func(t *testing.T) {
			tok, _, err := e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: "u1", Expire: tc.expire})
			if !tc.ok {
				wantIs(t, "Mint", err, tokenstore.ErrInvalidArgument)
				return
			}
			must(t, "Mint", err)
			if want := e.clock.Now().Add(tc.expire); !tok.Expire.Equal(want) {
				t.Fatalf("token expires %s, want %s", tok.Expire, want)
			}
		})
	}
}

func testMintUnknownUser(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	_, _, err := e.core.Mint(e.ctx, tokenstore.MintRequest{UserID: "nobody"})
	wantIs(t, "Mint for an unknown user", err, tokenstore.ErrUserNotFound)
	if n := e.count("tokens"); n != 0 {
		t.Fatalf("%d tokens stored after a failed mint", n)
	}
}

func testMintSecretNotStored(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	var secrets []string
	for _, n := range []int{32, 128} {
		_, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Length: n})
		secrets = append(secrets, secret)
	}
	recs := e.dump()
	for _, secret := range secrets {
		raw, _ := hex.DecodeString(secret)
		for _, form := range []struct {
			name  string
			bytes []byte
		}{
			{"hex", []byte(secret)},
			{"upper hex", []byte(strings.ToUpper(secret))},
			{"raw bytes", raw},
			{"base64 of the raw bytes", []byte(base64.StdEncoding.EncodeToString(raw)[:20])},
		} {
			if r, ok := findBytes(recs, form.bytes); ok {
				t.Fatalf("the secret (%s) is stored in clear in bucket %s under %q", form.name, r.Kind, r.Key)
			}
		}
	}
}

func testExchangeSuccess(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mint("u1")
	now := e.clock.Now()
	sess, cred, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{IP: "198.51.100.7", UserAgent: "curl/8"})
	must(t, "Exchange", err)
	if sess.UserID != "u1" || sess.ID == "" || sess.Provider != "token" || !slices.Equal(sess.Factors, []string{"token"}) {
		t.Fatalf("session = %+v", sess)
	}
	if sess.IP != "198.51.100.7" || sess.UserAgent != "curl/8" {
		t.Fatalf("session client = %q %q", sess.IP, sess.UserAgent)
	}
	if !sess.Expire.Equal(now.Add(tokenstore.DefaultSessionDuration)) {
		t.Fatalf("session expires %s, want %s", sess.Expire, now.Add(tokenstore.DefaultSessionDuration))
	}
	if id, sec, ok := tokenstore.ParseCredential(cred); !ok || id != "u1" || len(sec) != 256 {
		t.Fatalf("credential %q parses to %q, %d-char secret, %v", cred, id, len(sec), ok)
	}
	u, got, err := e.core.Authenticate(e.ctx, cred)
	must(t, "Authenticate", err)
	if u.ID != "u1" || got.ID != sess.ID {
		t.Fatalf("Authenticate = user %q session %q, want u1 and %q", u.ID, got.ID, sess.ID)
	}
	list, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(list) != 0 {
		t.Fatalf("%d tokens left after the exchange", len(list))
	}
	sessions, err := e.core.ListSessions(e.ctx, "u1")
	must(t, "ListSessions", err)
	if len(sessions) != 1 || sessions[0].ID != sess.ID {
		t.Fatalf("ListSessions = %+v", sessions)
	}
	// The session secret is kept as a hash only.
	_, sessionSecret, _ := tokenstore.ParseCredential(cred)
	if r, ok := findBytes(e.dump(), []byte(sessionSecret[:64])); ok {
		t.Fatalf("the session secret is stored in clear in bucket %s", r.Kind)
	}
}

func testExchangeOnce(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mint("u1")
	_, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "first Exchange", err)
	_, _, err = e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	wantIs(t, "second Exchange", err, tokenstore.ErrInvalidToken)
}

func testExchangeInvalid(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	_, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Length: 8})
	_, secret2 := e.mint("u2")
	wrong := []byte(secret)
	wrong[0] = "01"[btoi(wrong[0] == '0')]
	for _, tc := range []struct {
		name, user, secret string
	}{
		{"wrong secret", "u1", string(wrong)},
		{"prefix of the secret", "u1", secret[:6]},
		{"secret with more", "u1", secret + "0"},
		{"unknown user", "nobody", secret},
		{"another user's secret", "u1", secret2},
		{"secret under another user", "u2", secret},
		{"empty secret", "u1", ""},
		{"empty user", "", secret},
		{"overlong secret", "u1", strings.Repeat("a", 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.core.Exchange(e.ctx, tc.user, tc.secret, tokenstore.Client{})
			wantIs(t, "Exchange", err, tokenstore.ErrInvalidToken)
		})
	}
	// None of the failures consumed the real tokens.
	_, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange of u1's token after the failures", err)
	_, _, err = e.core.Exchange(e.ctx, "u2", secret2, tokenstore.Client{})
	must(t, "Exchange of u2's token after the failures", err)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func testExchangeExpiry(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for i, tc := range []struct {
		name  string
		after time.Duration
		ok    bool
	}{
		{"before expiry", 59 * time.Second, true},
		{"at expiry", 60 * time.Second, true}, // expiry is inclusive
		{"1µs after", 60*time.Second + time.Microsecond, false},
		{"1s after", 61 * time.Second, false},
		{"a day after", 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("exp%d", i)
			e.user(id)
			tok, secret := e.mintReq(tokenstore.MintRequest{UserID: id, Expire: 60 * time.Second})
			e.clock.Advance(tc.after)
			_, _, err := e.core.Exchange(e.ctx, id, secret, tokenstore.Client{})
			if tc.ok {
				must(t, "Exchange", err)
			} else {
				wantIs(t, "Exchange", err, tokenstore.ErrInvalidToken)
			}
			// Put the clock back for the next case.
			e.clock.Advance(tok.CreatedAt.Sub(e.clock.Now()))
		})
	}
}

// attempts returns the wrong guesses each live token of user has faced,
// by token id.
func attempts(t *testing.T, e *env, user string) map[string]int {
	t.Helper()
	list, err := e.core.ListTokens(e.ctx, user)
	must(t, "ListTokens", err)
	out := map[string]int{}
	for _, tok := range list {
		out[tok.ID] = tok.Attempts
	}
	return out
}

func testExchangeFailures(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	tok, secret := e.mint("u1")
	other, _ := e.mint("u2")
	for i := 1; i <= 3; i++ {
		_, _, err := e.core.Exchange(e.ctx, "u1", "ffffffff", tokenstore.Client{})
		wantIs(t, "Exchange", err, tokenstore.ErrInvalidToken)
		if n := attempts(t, e, "u1")[tok.ID]; n != i {
			t.Fatalf("after %d failures the token's Attempts = %d", i, n)
		}
	}
	if n := attempts(t, e, "u2")[other.ID]; n != 0 {
		t.Fatalf("another user's token counts %d failures, want 0", n)
	}
	_, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange", err)
	// An unknown user keeps no count, and has no tokens to count on.
	_, _, _ = e.core.Exchange(e.ctx, "nobody", "ffffff", tokenstore.Client{})
	if n := e.count("failures"); n != 0 {
		t.Fatalf("the failures bucket holds %d keys, want 0 (counts live on the tokens)", n)
	}
}

func testExchangeMaxAttempts(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("bystander")
	_, s1 := e.mint("u1")
	_, s2 := e.mint("u1")
	_, sb := e.mint("bystander")
	fail := func() {
		t.Helper()
		_, _, err := e.core.Exchange(e.ctx, "u1", "not-hex", tokenstore.Client{})
		wantIs(t, "Exchange of a wrong secret", err, tokenstore.ErrInvalidToken)
	}
	for range tokenstore.DefaultMaxAttempts - 1 {
		fail()
	}
	list, err := e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(list) != 2 {
		t.Fatalf("after %d failures %d tokens remain, want 2", tokenstore.DefaultMaxAttempts-1, len(list))
	}
	fail() // the 10th burns every token that was live for all ten
	list, err = e.core.ListTokens(e.ctx, "u1")
	must(t, "ListTokens", err)
	if len(list) != 0 {
		t.Fatalf("after %d failures %d tokens remain, want 0", tokenstore.DefaultMaxAttempts, len(list))
	}
	for _, secret := range []string{s1, s2} {
		_, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
		wantIs(t, "Exchange of a burned token", err, tokenstore.ErrInvalidToken)
	}
	_, _, err = e.core.Exchange(e.ctx, "bystander", sb, tokenstore.Client{})
	must(t, "another user's token survives the burn", err)
	_, fresh := e.mint("u1")
	_, _, err = e.core.Exchange(e.ctx, "u1", fresh, tokenstore.Client{})
	must(t, "Exchange of a token minted after the burn", err)
}

// testExchangeFailureDetail: every refusal is ErrInvalidToken, and its
// *ExchangeError tells the operator why and how many tokens it burned.
func testExchangeFailureDetail(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxAttempts: 3})
	e.user("u1")
	e.user("u2")
	_, short := e.mintReq(tokenstore.MintRequest{UserID: "u2", Expire: time.Minute})
	_, s1 := e.mint("u1")
	e.mint("u1")
	want := func(what, user, secret string, reason tokenstore.ExchangeFailure, burned int) {
		t.Helper()
		wantFailure(t, what, e.core, user, secret, reason, burned)
	}
	want("unknown user", "nobody", "ffffff", tokenstore.ExchangeUnknownUser, 0)
	want("empty secret", "u1", "", tokenstore.ExchangeWrongSecret, 0)
	want("wrong secret 1", "u1", "0000", tokenstore.ExchangeWrongSecret, 0)
	want("wrong secret 2", "u1", "0000", tokenstore.ExchangeWrongSecret, 0)
	want("wrong secret 3 burns both tokens", "u1", "0000", tokenstore.ExchangeWrongSecret, 2)
	want("a burned token's secret", "u1", s1, tokenstore.ExchangeWrongSecret, 0) // burned tokens are deleted
	e.clock.Advance(2 * time.Minute)
	want("an expired token", "u2", short, tokenstore.ExchangeExpired, 0)
	e.user("u3")
	_, s3 := e.mint("u3")
	e.guess("u3")
	strict := e.replica(tokenstore.Options{MaxAttempts: 1}) // a lowered setting meets a token with one guess
	wantFailure(t, "a token at its replica's limit", strict.core, "u3", s3, tokenstore.ExchangeBurned, 0)
}

func wantFailure(t *testing.T, what string, core *tokenstore.Core, user, secret string, reason tokenstore.ExchangeFailure, burned int) {
	t.Helper()
	_, _, err := core.Exchange(context.Background(), user, secret, tokenstore.Client{})
	wantIs(t, what, err, tokenstore.ErrInvalidToken)
	var xe *tokenstore.ExchangeError
	if !errors.As(err, &xe) {
		t.Fatalf("%s: %v is no *ExchangeError", what, err)
	}
	if xe.Reason != reason || xe.Burned != burned {
		t.Fatalf("%s: reason %q burned %d, want %q and %d", what, xe.Reason, xe.Burned, reason, burned)
	}
}

// testExchangeLoweredMaxAttempts: a token that faced more wrong guesses
// than a core's MaxAttempts (a lowered setting, another replica's) is
// refused by that core even with the right secret.
func testExchangeLoweredMaxAttempts(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mint("u1")
	for range 5 {
		e.guess("u1")
	}
	strict := e.replica(tokenstore.Options{MaxAttempts: 3})
	strict.wantExchange("Exchange under MaxAttempts 3 of a token with 5 wrong guesses", "u1", secret, false)
}

func testExchangeMaxAttemptsOption(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxAttempts: 3})
	e.user("u1")
	_, secret := e.mint("u1")
	for range 2 {
		_, _, _ = e.core.Exchange(e.ctx, "u1", "0000", tokenstore.Client{})
	}
	if list, _ := e.core.ListTokens(e.ctx, "u1"); len(list) != 1 {
		t.Fatalf("after 2 of 3 failures %d tokens remain, want 1", len(list))
	}
	_, _, _ = e.core.Exchange(e.ctx, "u1", "0000", tokenstore.Client{})
	_, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	wantIs(t, "Exchange after MaxAttempts failures", err, tokenstore.ErrInvalidToken)
}

// guess makes one wrong guess at user's secrets.
func (e *env) guess(user string) {
	e.t.Helper()
	_, _, err := e.core.Exchange(e.ctx, user, "0000000", tokenstore.Client{})
	wantIs(e.t, "Exchange of a wrong secret", err, tokenstore.ErrInvalidToken)
}

// wantExchange checks that secret exchanges (ok) or is refused.
func (e *env) wantExchange(what, user, secret string, ok bool) {
	e.t.Helper()
	_, _, err := e.core.Exchange(e.ctx, user, secret, tokenstore.Client{})
	if ok {
		must(e.t, what, err)
	} else {
		wantIs(e.t, what, err, tokenstore.ErrInvalidToken)
	}
}

// testExchangeBurnSparesLater is the attack on a victim's sign-in: wrong
// guesses spread out ahead of time must not burn a token minted after
// them, while no token ever faces more than MaxAttempts wrong guesses.
func testExchangeBurnSparesLater(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	first, s1 := e.mint("u1")
	for range tokenstore.DefaultMaxAttempts - 1 {
		e.guess("u1")
		e.clock.Advance(time.Second)
	}
	second, s2 := e.mint("u1")
	e.clock.Advance(time.Second)
	e.guess("u1") // the first token's 10th, the second's 1st
	got := attempts(t, e, "u1")
	if _, ok := got[first.ID]; ok {
		t.Fatalf("the first token survived %d wrong guesses", tokenstore.DefaultMaxAttempts)
	}
	if got[second.ID] != 1 {
		t.Fatalf("the second token counts %d wrong guesses, want 1 (tokens: %v)", got[second.ID], got)
	}
	for range tokenstore.DefaultMaxAttempts - 2 {
		e.guess("u1")
	}
	if n := attempts(t, e, "u1")[second.ID]; n != tokenstore.DefaultMaxAttempts-1 {
		t.Fatalf("the second token counts %d wrong guesses, want %d", n, tokenstore.DefaultMaxAttempts-1)
	}
	e.guess("u1") // the second token's own 10th
	e.wantExchange("Exchange of the first token", "u1", s1, false)
	e.wantExchange("Exchange of the second token after its 10th wrong guess", "u1", s2, false)
}

// testExchangeSuccessKeepsCounts: a sign-in with one token must not give
// an attacker a fresh allowance against the user's other live tokens.
func testExchangeSuccessKeepsCounts(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	target, s1 := e.mint("u1")
	_, s2 := e.mint("u1")
	for range tokenstore.DefaultMaxAttempts - 1 {
		e.guess("u1")
	}
	e.wantExchange("the victim's sign-in with the second token", "u1", s2, true)
	if n := attempts(t, e, "u1")[target.ID]; n != tokenstore.DefaultMaxAttempts-1 {
		t.Fatalf("after a success the target counts %d wrong guesses, want %d", n, tokenstore.DefaultMaxAttempts-1)
	}
	e.guess("u1")
	e.wantExchange("Exchange after the target's 10th wrong guess", "u1", s1, false)
}

// testExchangeConcurrentGuesses: wrong guesses racing each other lose no
// count, so the right secret after them is refused.
func testExchangeConcurrentGuesses(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mint("u1")
	errs := make([]error, 4*tokenstore.DefaultMaxAttempts)
	race(len(errs), func(i int) {
		_, _, errs[i] = e.core.Exchange(e.ctx, "u1", fmt.Sprintf("%07x", i), tokenstore.Client{})
	})
	for i, err := range errs {
		wantIs(t, fmt.Sprintf("wrong guess %d", i), err, tokenstore.ErrInvalidToken)
	}
	e.wantExchange("Exchange after the concurrent guesses", "u1", secret, false)
}

// testMaxOutstanding: a user's live tokens are capped, so k outstanding
// tokens cannot multiply a guesser's odds beyond the cap.
func testMaxOutstanding(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	_, other := e.mint("u2")
	var secrets []string
	for range tokenstore.DefaultMaxOutstanding + 2 {
		_, secret := e.mint("u1")
		secrets = append(secrets, secret)
		e.clock.Advance(time.Second)
	}
	if list, _ := e.core.ListTokens(e.ctx, "u1"); len(list) != tokenstore.DefaultMaxOutstanding {
		t.Fatalf("%d live tokens, want %d", len(list), tokenstore.DefaultMaxOutstanding)
	}
	for i, secret := range secrets {
		e.wantExchange(fmt.Sprintf("Exchange of token %d of %d", i+1, len(secrets)), "u1", secret, i >= 2)
	}
	e.wantExchange("another user's token", "u2", other, true)
}

func testMaxOutstandingOption(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxOutstanding: 1, TokenExpire: time.Minute})
	e.user("u1")
	_, old := e.mint("u1")
	e.clock.Advance(2 * time.Minute) // expired: it does not count
	_, s1 := e.mint("u1")
	e.clock.Advance(time.Second)
	_, s2 := e.mint("u1")
	e.wantExchange("the expired token", "u1", old, false)
	e.wantExchange("the evicted token", "u1", s1, false)
	e.wantExchange("the newest token", "u1", s2, true)
	if n := e.count("tokens"); n != 0 {
		t.Fatalf("%d token keys left, want 0 (the expired one goes with the eviction)", n)
	}
	for _, bad := range []int{-1, tokenstore.MaxMaxOutstanding + 1} {
		_, err := tokenstore.New(e.ctx, e.store, tokenstore.Options{MaxOutstanding: bad})
		wantIs(t, fmt.Sprintf("New with MaxOutstanding %d", bad), err, tokenstore.ErrInvalidArgument)
	}
}

func testExchangeProvider(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Provider: "oidc"})
	sess, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange", err)
	if sess.Provider != "oidc" || !sess.HasFactor("oidc") {
		t.Fatalf("session provider %q factors %q, want oidc", sess.Provider, sess.Factors)
	}
}

// idpTokens are an IdP's tokens, with markers a scan of the store finds.
var idpTokens = tokenstore.ProviderTokens{
	AccessToken:       "idp-access-token-PLAINTEXT-MARKER",
	AccessTokenExpiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
	RefreshToken:      "idp-refresh-token-PLAINTEXT-MARKER",
}

// testExchangeProviderTokens: a token minted by a sign-in through a
// provider opens a session carrying the identity's subject and the IdP's
// tokens, which the store holds only sealed, for that session alone.
func testExchangeProviderTokens(t *testing.T, s *suite) {
	sealer, _ := NewSealer(t, 1)
	e := s.env(t, tokenstore.Options{Sealer: sealer})
	e.user("u1")
	_, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Provider: "oidc", ProviderUID: "sub-123", ProviderTokens: idpTokens})
	wantNoPlainTokens(t, e)
	sess, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange", err)
	if sess.Provider != "oidc" || sess.ProviderUID != "sub-123" {
		t.Fatalf("session provider %q uid %q, want oidc sub-123", sess.Provider, sess.ProviderUID)
	}
	wantNoPlainTokens(t, e)
	stored, err := e.core.SessionByID(e.ctx, "u1", sess.ID)
	must(t, "SessionByID", err)
	got, err := e.core.ProviderTokens(stored)
	must(t, "ProviderTokens", err)
	if got != idpTokens {
		t.Fatalf("ProviderTokens = %+v, want %+v", got, idpTokens)
	}
	// Sealed for this session: moved onto another, they do not open.
	other, _ := e.session("u1")
	other.ProviderTokens = sess.ProviderTokens
	_, err = e.core.ProviderTokens(other)
	wantIs(t, "ProviderTokens moved to another session", err, tokenstore.ErrSealBroken)
	// A refresh replaces them, sealed again for the same session.
	fresh := tokenstore.ProviderTokens{AccessToken: "idp-access-token-PLAINTEXT-MARKER-2", RefreshToken: idpTokens.RefreshToken}
	e.clock.Advance(time.Hour)
	updated, err := e.core.UpdateSession(e.ctx, "u1", sess.ID, &fresh)
	must(t, "UpdateSession", err)
	if got, err := e.core.ProviderTokens(updated); err != nil || got != fresh || !updated.Expire.Equal(sess.Expire.Add(time.Hour)) {
		t.Fatalf("after UpdateSession: %+v, %v; expire %v, want %v", got, err, updated.Expire, sess.Expire.Add(time.Hour))
	}
	if again, err := e.core.UpdateSession(e.ctx, "u1", sess.ID, nil); err != nil || !bytes.Equal(again.ProviderTokens, updated.ProviderTokens) {
		t.Fatalf("UpdateSession without tokens changed them: %v", err)
	}
	_, err = e.core.UpdateSession(e.ctx, "u2", sess.ID, &fresh)
	wantIs(t, "UpdateSession on another user's session", err, tokenstore.ErrSessionNotFound)
	direct, _, err := e.core.CreateProviderSession(e.ctx, "u1", "oidc", "sub-9", idpTokens, tokenstore.Client{})
	must(t, "CreateProviderSession", err)
	if got, err := e.core.ProviderTokens(direct); err != nil || got != idpTokens || direct.ProviderUID != "sub-9" {
		t.Fatalf("CreateProviderSession: uid %q tokens %+v, %v", direct.ProviderUID, got, err)
	}
	wantNoPlainTokens(t, e)
}

// testExchangeProviderTokensUnsealed: a core without a Sealer keeps no
// IdP token at all rather than one in plain text.
func testExchangeProviderTokensUnsealed(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	_, secret := e.mintReq(tokenstore.MintRequest{UserID: "u1", Provider: "oidc", ProviderUID: "sub-1", ProviderTokens: idpTokens})
	sess, _, err := e.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange", err)
	got, err := e.core.ProviderTokens(sess)
	if err != nil || !got.IsZero() || sess.ProviderUID != "sub-1" {
		t.Fatalf("without a Sealer: uid %q tokens %+v, %v; want sub-1 and none", sess.ProviderUID, got, err)
	}
	wantNoPlainTokens(t, e)
}

// wantNoPlainTokens fails if any stored value holds an IdP token in
// plain text.
func wantNoPlainTokens(t *testing.T, e *env) {
	t.Helper()
	for _, r := range e.dump() {
		for _, tok := range []string{idpTokens.AccessToken, idpTokens.RefreshToken} {
			if bytes.Contains(r.Value, []byte(tok)) || bytes.Contains(r.Key, []byte(tok)) {
				t.Fatalf("bucket %s holds an IdP token in plain text", r.Kind)
			}
		}
	}
}

func testExchangePepper(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{Pepper: []byte("a configured pepper of 32 bytes!")})
	e.user("u1")
	_, secret := e.mint("u1")
	// A core on the same store with the store's own pepper cannot match it.
	other := e.replica(tokenstore.Options{})
	_, _, err := other.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	wantIs(t, "Exchange under another pepper", err, tokenstore.ErrInvalidToken)
	same := e.replica(tokenstore.Options{Pepper: []byte("a configured pepper of 32 bytes!")})
	_, _, err = same.core.Exchange(e.ctx, "u1", secret, tokenstore.Client{})
	must(t, "Exchange under the same pepper", err)
}

// sessions opens n sessions of user, one second apart, oldest first.
func (e *env) sessions(user string, n int) ([]tokenstore.Session, []string) {
	e.t.Helper()
	var ss []tokenstore.Session
	var creds []string
	for range n {
		s, cred, err := e.core.CreateSession(e.ctx, user, "test", tokenstore.Client{})
		if err != nil {
			e.t.Fatalf("CreateSession: %v", err)
		}
		ss = append(ss, s)
		creds = append(creds, cred)
		e.clock.Advance(time.Second)
	}
	return ss, creds
}

func sessionIDs(ss []tokenstore.Session) []string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

func (e *env) wantSessions(user string, want []tokenstore.Session) {
	e.t.Helper()
	got, err := e.core.ListSessions(e.ctx, user)
	must(e.t, "ListSessions", err)
	if !slices.Equal(sessionIDs(got), sessionIDs(want)) {
		e.t.Fatalf("ListSessions(%s) = %q, want %q", user, sessionIDs(got), sessionIDs(want))
	}
}

func (e *env) wantAuth(cred string, ok bool) {
	e.t.Helper()
	_, _, err := e.core.Authenticate(e.ctx, cred)
	if ok {
		must(e.t, "Authenticate", err)
	} else {
		wantIs(e.t, "Authenticate", err, tokenstore.ErrSessionNotFound)
	}
}

func testSessionCap(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxSessions: 3})
	e.user("u1")
	ss, creds := e.sessions("u1", 5)
	e.wantSessions("u1", ss[2:])
	for i, cred := range creds {
		e.wantAuth(cred, i >= 2)
	}
	_, err := e.core.SessionByID(e.ctx, "u1", ss[0].ID)
	wantIs(t, "SessionByID of an evicted session", err, tokenstore.ErrSessionNotFound)
	// Exchange counts against the same cap.
	sess, cred := e.session("u1")
	e.wantSessions("u1", append(slices.Clone(ss[3:]), sess))
	e.wantAuth(cred, true)
	e.wantAuth(creds[2], false)
}

func testSessionDefaultCap(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	ss, creds := e.sessions("u1", tokenstore.DefaultMaxSessions+1)
	e.wantSessions("u1", ss[1:])
	e.wantAuth(creds[0], false)
	e.wantAuth(creds[1], true)
}

func testSessionUnlimited(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{MaxSessions: -1})
	e.user("u1")
	ss, _ := e.sessions("u1", tokenstore.DefaultMaxSessions+2)
	e.wantSessions("u1", ss)
}

func testSessionList(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	a, _ := e.sessions("u1", 2)
	b, _ := e.sessions("u2", 1)
	c, _ := e.sessions("u1", 1)
	e.wantSessions("u1", append(a, c...))
	e.wantSessions("u2", b)
	e.wantSessions("nobody", nil)
	got, err := e.core.SessionByID(e.ctx, "u1", a[1].ID)
	must(t, "SessionByID", err)
	if got.ID != a[1].ID || got.UserID != "u1" {
		t.Fatalf("SessionByID = %+v", got)
	}
	_, err = e.core.SessionByID(e.ctx, "u2", a[1].ID)
	wantIs(t, "SessionByID of another user's session", err, tokenstore.ErrSessionNotFound)
}

func testSessionDelete(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	ss, creds := e.sessions("u1", 2)
	other, otherCreds := e.sessions("u2", 1)
	must(t, "DeleteSession", e.core.DeleteSession(e.ctx, "u1", ss[0].ID))
	e.wantAuth(creds[0], false)
	e.wantAuth(creds[1], true)
	e.wantSessions("u1", ss[1:])
	wantIs(t, "DeleteSession again", e.core.DeleteSession(e.ctx, "u1", ss[0].ID), tokenstore.ErrSessionNotFound)
	wantIs(t, "DeleteSession of another user's session", e.core.DeleteSession(e.ctx, "u1", other[0].ID), tokenstore.ErrSessionNotFound)
	e.wantAuth(otherCreds[0], true)
	wantIs(t, "DeleteSession of an unknown id", e.core.DeleteSession(e.ctx, "u1", "nosuchsession"), tokenstore.ErrSessionNotFound)
}

func testSessionDeleteAll(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	_, creds := e.sessions("u1", 3)
	other, otherCreds := e.sessions("u2", 1)
	n, err := e.core.DeleteSessions(e.ctx, "u1")
	must(t, "DeleteSessions", err)
	if n != 3 {
		t.Fatalf("DeleteSessions = %d, want 3", n)
	}
	for _, cred := range creds {
		e.wantAuth(cred, false)
	}
	e.wantSessions("u1", nil)
	e.wantSessions("u2", other)
	e.wantAuth(otherCreds[0], true)
	if n, err := e.core.DeleteSessions(e.ctx, "u1"); err != nil || n != 0 {
		t.Fatalf("DeleteSessions again = %d, %v; want 0", n, err)
	}
	for _, b := range []string{"sessions"} {
		if n := e.count(b); n != 1 {
			t.Fatalf("bucket %s holds %d keys, want 1 (u2's session)", b, n)
		}
	}
}

func testSessionExpiry(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{SessionDuration: time.Hour})
	e.user("u1")
	sess, cred := e.session("u1")
	if !sess.Expire.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("session expires %s, want an hour from %s", sess.Expire, e.clock.Now())
	}
	e.clock.Advance(time.Hour)
	e.wantAuth(cred, true) // expiry is inclusive
	e.clock.Advance(time.Second)
	e.wantAuth(cred, false)
	e.wantSessions("u1", nil)
	_, err := e.core.SessionByID(e.ctx, "u1", sess.ID)
	wantIs(t, "SessionByID of an expired session", err, tokenstore.ErrSessionNotFound)
}

func testSessionAuthenticateBad(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	_, cred := e.session("u1")
	_, secret, _ := tokenstore.ParseCredential(cred)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	wrongSecret := []byte(secret)
	wrongSecret[10] = "01"[btoi(wrongSecret[10] == '0')]
	for _, tc := range []struct{ name, cred string }{
		{"empty", ""},
		{"garbage", "garbage!"},
		{"base64 of garbage", b64("not json")},
		{"no secret", b64(`{"id":"u1"}`)},
		{"no id", b64(`{"secret":"` + secret + `"}`)},
		{"other user id", tokenstore.Credential("u2", secret)},
		{"unknown user id", tokenstore.Credential("nobody", secret)},
		{"wrong secret", tokenstore.Credential("u1", string(wrongSecret))},
		{"short secret", tokenstore.Credential("u1", secret[:64])},
		{"raw secret", secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.core.Authenticate(e.ctx, tc.cred)
			wantIs(t, "Authenticate", err, tokenstore.ErrSessionNotFound)
		})
	}
	e.wantAuth(cred, true)
}

func testCreateSession(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	sess, cred, err := e.core.CreateSession(e.ctx, "u1", "password", tokenstore.Client{IP: "203.0.113.9"})
	must(t, "CreateSession", err)
	if sess.Provider != "password" || !sess.HasFactor("password") || sess.IP != "203.0.113.9" {
		t.Fatalf("session = %+v", sess)
	}
	e.wantAuth(cred, true)
	_, _, err = e.core.CreateSession(e.ctx, "nobody", "password", tokenstore.Client{})
	wantIs(t, "CreateSession for an unknown user", err, tokenstore.ErrUserNotFound)
}
