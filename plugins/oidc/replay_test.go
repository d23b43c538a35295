package oidc

import (
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/handoffd/handoff/providers/sdk"
)

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// Segment indexes of a compact JWS.
const (
	segHeader = iota
	segPayload
	segSignature
)

var segNames = []string{"header", "payload", "signature"}

// respell returns token with segment seg spelled differently but decoding
// to the same bytes: the unused low bits of the segment's last base64url
// character set to each other value. A segment whose length leaves no
// unused bits has no respellings.
func respell(token string, seg int) []string {
	parts := strings.Split(token, ".")
	s := parts[seg]
	unused := (len(s) * 6) % 8 // 4 bits for len%4 == 2, 2 for len%4 == 3
	if len(s) == 0 || unused == 0 {
		return nil
	}
	last := strings.IndexByte(b64url, s[len(s)-1])
	var out []string
	for x := 1; x < 1<<unused; x++ {
		p := append([]string(nil), parts...)
		p[seg] = s[:len(s)-1] + string(b64url[last^x])
		out = append(out, strings.Join(p, "."))
	}
	return out
}

// highS is an ES256 token with its signature (r, s) replaced by (r, n-s),
// which ECDSA verification accepts as well: another valid signature of the
// same claims that nobody but the attacker made.
func highS(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature: %d bytes, %v", len(sig), err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	out := append(append([]byte(nil), sig[:32]...), s.FillBytes(make([]byte, 32))...)
	parts[2] = base64.RawURLEncoding.EncodeToString(out)
	return strings.Join(parts, ".")
}

// padded signs claims with sign, adding a "pad" claim until every segment
// of the token has a respelling, so each segment's malleability is tried.
func padded(t *testing.T, sign func(map[string]any) string, claims map[string]any) string {
	t.Helper()
	for n := range 3 {
		claims["pad"] = strings.Repeat("x", n)
		tok := sign(claims)
		if respell(tok, segHeader) != nil && respell(tok, segPayload) != nil && respell(tok, segSignature) != nil {
			return tok
		}
	}
	t.Fatal("no padding gives every segment unused bits")
	return ""
}

// TestReplayRespelledIDToken is the attack on the native flow's
// one-token-one-sign-in rule: the same ID token spelled differently
// (unused base64url bits of header, payload or signature flipped, or an
// ECDSA signature turned into its twin (r, n-s)) verifies as well, so a
// replay mark taken over the token's text lets each spelling sign in once
// more. Every spelling after the first sign-in must be refused, also when
// they race.
func TestReplayRespelledIDToken(t *testing.T) {
	op := newOP(t)
	ec := op.AddES256Key(t) // before the verifier discovers the OP
	// Without jti, tokens made in one second with the same claims are
	// the same token to the replay mark; seq tells the test's apart.
	var seq atomic.Int64
	claims := func(withJTI bool) map[string]any {
		c := op.Claims(mobileClient, alice)
		if !withJTI {
			delete(c, "jti")
			c["seq"] = seq.Add(1)
		}
		return c
	}
	rs := func(c map[string]any) string { return op.Sign(t, c) }
	es := func(c map[string]any) string { return ec.Sign(t, c) }
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, nil))
			verify := func(token, nonce string) error {
				p := map[string]any{"id_token": token}
				if nonce != "" {
					p["nonce"] = nonce
				}
				_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, p)})
				return err
			}
			// replayAll signs in with first, then tries the original
			// token and every other spelling: each is refused.
			replayAll := func(name, token, first, nonce string, more ...string) {
				t.Helper()
				if err := verify(first, nonce); err != nil {
					t.Fatalf("%s: the first sign-in (with a respelled token) failed: %v", name, err)
				}
				others := append([]string{token}, more...)
				for seg := range segNames {
					others = append(others, respell(token, seg)...)
				}
				tried := 0
				for _, o := range others {
					if o == first {
						continue
					}
					tried++
					wantErr(t, name+": replay", verify(o, nonce), sdk.ErrInvalidCredentials, "used already")
				}
				if tried < 3 {
					t.Fatalf("%s: only %d replays tried", name, tried)
				}
			}

			for _, jti := range []bool{true, false} {
				label := map[bool]string{true: "with jti", false: "without jti"}[jti]
				for _, alg := range []struct {
					name string
					sign func(map[string]any) string
				}{{"RS256", rs}, {"ES256", es}} {
					// One fresh token per segment: its first sign-in is a
					// respelling of that segment, which must verify (the
					// attack is real), then nothing else may.
					for seg, segName := range segNames {
						name := alg.name + " " + label + ", " + segName + " respelled first"
						tok := padded(t, alg.sign, claims(jti))
						replayAll(name, tok, respell(tok, seg)[0], "")
					}
				}
			}

			// ECDSA's twin signature: (r, n-s) verifies too, and is a
			// different signature, so it must not count as another token.
			tok := es(claims(true))
			twin := highS(t, tok)
			replayAll("ES256 twin signature first", tok, twin, "", append(respell(twin, segSignature), twin)...)
			tok = es(claims(false))
			twin = highS(t, tok)
			replayAll("ES256 twin signature first, without jti", tok, twin, "", twin)

			// A token the OP itself issued to the app (whatever
			// segments of it have unused bits).
			issued := op.AppSignIn(t, mobileClient, mobileRedir, "n-"+mode, alice)
			var spellings []string
			for seg := range segNames {
				spellings = append(spellings, respell(issued, seg)...)
			}
			if len(spellings) == 0 {
				t.Fatal("the OP's token has no respellable segment")
			}
			replayAll("OP-issued", issued, spellings[0], "n-"+mode)

			// Spellings raced: one sign-in wins.
			for _, jti := range []bool{true, false} {
				tok := padded(t, rs, claims(jti))
				all := []string{tok}
				for seg := range segNames {
					all = append(all, respell(tok, seg)...)
				}
				var (
					mu   sync.Mutex
					wins int
					errs []error
					wg   sync.WaitGroup
				)
				for i := range 3 * len(all) {
					wg.Go(func() {
						err := verify(all[i%len(all)], "")
						mu.Lock()
						defer mu.Unlock()
						if err == nil {
							wins++
						} else {
							errs = append(errs, err)
						}
					})
				}
				wg.Wait()
				if wins != 1 {
					t.Fatalf("jti %v: %d concurrent sign-ins with %d spellings of one token: %d won, want 1", jti, 3*len(all), len(all), wins)
				}
				for _, err := range errs {
					wantErr(t, "concurrent replay", err, sdk.ErrInvalidCredentials, "used already")
				}
			}

			// Two different tokens of the same person, same second, no jti:
			// both sign in (the mark is the whole claim set, not a part).
			a, b := claims(false), claims(false)
			b["nonce"], b["seq"], b["iat"] = "other", a["seq"], a["iat"]
			if err := verify(rs(a), ""); err != nil {
				t.Fatalf("token a: %v", err)
			}
			if err := verify(rs(b), "other"); err != nil {
				t.Fatalf("token b (differs from a in nonce only): %v", err)
			}
		})
	}
}

// TestRedirectFlowSpendsIDToken: the ID token the redirect flow received
// (from the token endpoint, read from a log or a proxy on its way) cannot
// sign in again through the native flow, which accepts client_id as an
// audience, with the nonce read from the token itself.
func TestRedirectFlowSpendsIDToken(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, nil))
			query, state := browse(t, c, op)
			if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: query, State: state, CallbackURL: callbackURL}); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			issued := op.IssuedIDTokens()
			idToken := issued[len(issued)-1]
			raw, err := base64.RawURLEncoding.DecodeString(strings.Split(idToken, ".")[1])
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Aud   any    `json:"aud"`
				Nonce string `json:"nonce"`
			}
			if err := json.Unmarshal(raw, &claims); err != nil || claims.Nonce == "" {
				t.Fatalf("the issued ID token's claims %s: %v", raw, err)
			}
			for _, tok := range append([]string{idToken}, respell(idToken, segSignature)...) {
				_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": tok, "nonce": claims.Nonce})})
				wantErr(t, "the redirect flow's ID token, replayed natively", err, sdk.ErrInvalidCredentials, "used already")
			}
		})
	}
}
