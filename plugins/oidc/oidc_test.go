package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// The OP's clients: a confidential web client (handoff's redirect flow),
// one that leaves the profile claims to userinfo, and a mobile app's
// public client (the native flow's tokens).
const (
	webClient    = "handoff-web"
	webSecret    = "web-client-secret-123"
	plainClient  = "handoff-plain"
	plainSecret  = "plain-client-secret-456"
	publicClient = "handoff-spa"
	mobileClient = "mobile-app"
	mobileRedir  = "com.example.app:/oauth/callback"
	callbackURL  = "http://127.0.0.1:9/v1/account/sessions/oauth2/callback/auth0/default"
)

var alice = oidctest.DefaultUser

func newOP(t *testing.T) *oidctest.Provider {
	t.Helper()
	return oidctest.New(t, oidctest.Options{Clients: []oidctest.Client{
		{ID: webClient, Secret: webSecret, RedirectURIs: []string{callbackURL}, ClaimsInIDToken: true},
		{ID: plainClient, Secret: plainSecret, RedirectURIs: []string{callbackURL}},
		{ID: publicClient, RedirectURIs: []string{callbackURL}, ClaimsInIDToken: true},
		{ID: mobileClient, RedirectURIs: []string{mobileRedir}, ClaimsInIDToken: true},
	}})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// factory makes verifiers that retry a down IdP at once, so the tests
// need not wait out the production pause.
func factory() sdk.Verifier {
	v := New().(*Verifier)
	v.retry = 10 * time.Millisecond
	return v
}

// connect configures a verifier in-process ("direct") or through the
// go-plugin gRPC pair ("grpc", what the host sees).
func connect(t *testing.T, mode string, cfg map[string]any) providertest.Conn {
	t.Helper()
	var c providertest.Conn
	if mode == "grpc" {
		c = providertest.Open(t, factory)
	} else {
		c = providertest.Direct(factory)
	}
	if err := c.Configure(ctxT(t), providertest.RawConfig(t, cfg)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return c
}

func webConfig(op *oidctest.Provider, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"issuer":        op.Issuer,
		"client_id":     webClient,
		"client_secret": webSecret,
		"audiences":     []string{mobileClient},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

var modes = []string{"direct", "grpc"}

func payload(t *testing.T, v map[string]any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantErr fails unless err matches sentinel and its message holds each of
// msgs.
func wantErr(t *testing.T, what string, err, sentinel error, msgs ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: error %v (code %v), want %v", what, err, sdk.CodeOf(err), sentinel)
	}
	for _, m := range msgs {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: error %q lacks %q", what, err, m)
		}
	}
}

// browse runs Begin, the browser's login at the real OP, and returns the
// callback's query (the OP's redirect to the callback URL, not followed)
// and the flow state to complete with.
func browse(t *testing.T, c providertest.Conn, op *oidctest.Provider, scopes ...string) (url.Values, []byte) {
	t.Helper()
	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL, Scopes: scopes, RequestID: "r1"})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	resp := oidctest.Login(t, op.Browser(), res.AuthURL, alice.Username, alice.Password)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login answered %d, want a redirect to the callback", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), callbackURL+"?") {
		t.Fatalf("the OP redirected to %q, want the callback", resp.Header.Get("Location"))
	}
	return loc.Query(), res.State
}

// TestRedirectFlow runs the browser flow against the real OP: Begin's
// authorize URL (state, nonce, PKCE S256), the login form, the redirect to
// the callback, Complete's code exchange and ID token checks.
func TestRedirectFlow(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, nil))
			res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL, Scopes: []string{"phone"}})
			if err != nil {
				t.Fatal(err)
			}
			auth, err := url.Parse(res.AuthURL)
			if err != nil {
				t.Fatal(err)
			}
			q := auth.Query()
			if !strings.HasPrefix(res.AuthURL, op.URL(oidctest.AuthorizePath)+"?") || q.Get("client_id") != webClient ||
				q.Get("response_type") != "code" || q.Get("redirect_uri") != callbackURL ||
				q.Get("state") == "" || q.Get("nonce") == "" || q.Get("code_challenge") == "" ||
				q.Get("code_challenge_method") != "S256" || q.Get("scope") != "openid email profile phone" {
				t.Fatalf("authorize URL %s", res.AuthURL)
			}
			var st flowState
			if err := json.Unmarshal(res.State, &st); err != nil || st.State != q.Get("state") || st.Nonce != q.Get("nonce") || st.Verifier == "" {
				t.Fatalf("kept state %s, %v", res.State, err)
			}
			if strings.Contains(res.AuthURL, st.Verifier) {
				t.Fatal("the PKCE verifier is in the authorize URL")
			}
			resp := oidctest.Login(t, op.Browser(), res.AuthURL, alice.Username, alice.Password)
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: loc.Query(), State: res.State, CallbackURL: callbackURL})
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if id.Subject != alice.ID || id.Email != alice.Email || !id.EmailVerified || id.Name != "Alice Liddell" {
				t.Fatalf("identity %+v", id)
			}
			if id.Claims["iss"] != op.Issuer || id.Claims["nonce"] != nil || id.Claims["at_hash"] != nil {
				t.Fatalf("claims %v", id.Claims)
			}
			// The OP's access token and its expiry travel to the host, for
			// the session's providerAccessToken and providerAccessTokenExpiry.
			if id.AccessToken == "" || time.Until(id.AccessTokenExpiry) <= 0 {
				t.Fatalf("provider tokens: access %t, expiry %v", id.AccessToken != "", id.AccessTokenExpiry)
			}

			// The code is one-time: the OP refuses it the second time.
			_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: loc.Query(), State: res.State, CallbackURL: callbackURL})
			wantErr(t, "replayed code", err, sdk.ErrInvalidCredentials, "refused the code")
		})
	}
}

// TestRedirectFlowVariants: userinfo supplies what the ID token lacks; a
// public client (no secret) runs on PKCE alone; a wrong PKCE verifier is
// refused by the OP, which shows the challenge is enforced.
func TestRedirectFlowVariants(t *testing.T) {
	op := newOP(t)
	t.Run("claims only from userinfo", func(t *testing.T) {
		cfg := map[string]any{"issuer": op.Issuer, "client_id": plainClient, "client_secret": plainSecret}
		c := connect(t, "grpc", cfg)
		q, st := browse(t, c, op)
		id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
		if err != nil {
			t.Fatal(err)
		}
		if id.Subject != alice.ID || id.Email != "" {
			t.Fatalf("without userinfo: %+v (the OP keeps email out of the ID token)", id)
		}
		cfg["userinfo"] = true
		c = connect(t, "grpc", cfg)
		q, st = browse(t, c, op)
		id, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
		if err != nil {
			t.Fatal(err)
		}
		if id.Subject != alice.ID || id.Email != alice.Email || !id.EmailVerified || id.Name != "Alice Liddell" || id.Claims["given_name"] != "Alice" {
			t.Fatalf("with userinfo: %+v", id)
		}
	})
	t.Run("public client", func(t *testing.T) {
		c := connect(t, "direct", map[string]any{"issuer": op.Issuer, "client_id": publicClient})
		q, st := browse(t, c, op)
		id, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
		if err != nil || id.Subject != alice.ID {
			t.Fatalf("%+v %v", id, err)
		}
	})
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		c := connect(t, "direct", webConfig(op, nil))
		q, raw := browse(t, c, op)
		var st flowState
		_ = json.Unmarshal(raw, &st)
		st.Verifier = strings.Repeat("x", 43)
		forged, _ := json.Marshal(st)
		_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: forged})
		wantErr(t, "wrong verifier", err, sdk.ErrInvalidCredentials, "refused the code")
	})
	t.Run("wrong nonce kept", func(t *testing.T) {
		c := connect(t, "direct", webConfig(op, nil))
		q, raw := browse(t, c, op)
		var st flowState
		_ = json.Unmarshal(raw, &st)
		st.Nonce = "another-nonce"
		forged, _ := json.Marshal(st)
		_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: forged})
		wantErr(t, "nonce", err, sdk.ErrInvalidCredentials, "nonce does not match")
	})
}

// TestCompleteRefusals: a callback whose state is not the flow's (another
// flow's callback, a forged one), the IdP's error, missing pieces.
func TestCompleteRefusals(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, nil))
			qA, stA := browse(t, c, op)
			qB, stB := browse(t, c, op)

			// Flow A's callback completed with flow B's state: a mix-up.
			_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: qA, State: stB})
			wantErr(t, "state mismatch", err, sdk.ErrInvalidCredentials, "state does not match")
			forged := url.Values{"code": qB["code"], "state": {"forged"}}
			_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: forged, State: stB})
			wantErr(t, "forged state", err, sdk.ErrInvalidCredentials, "state does not match")

			// The right pairs still complete; each once.
			if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: qB, State: stB}); err != nil {
				t.Fatalf("flow B: %v", err)
			}
			if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: qA, State: stA}); err != nil {
				t.Fatalf("flow A: %v", err)
			}
			_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: qA, State: stA})
			wantErr(t, "replay", err, sdk.ErrInvalidCredentials)

			for name, tc := range map[string]struct {
				q     url.Values
				state []byte
				want  error
				msg   string
			}{
				"idp error":      {url.Values{"error": {"access_denied"}, "error_description": {"the user said no"}, "state": qA["state"]}, stA, sdk.ErrInvalidCredentials, "access_denied (the user said no)"},
				"no state":       {url.Values{"code": {"x"}}, stA, sdk.ErrInvalidRequest, "no state"},
				"no code":        {url.Values{"state": qA["state"]}, stA, sdk.ErrInvalidRequest, "no code"},
				"no kept state":  {qA, nil, sdk.ErrInvalidRequest, "flow state"},
				"garbage state":  {qA, []byte("garbage"), sdk.ErrInvalidRequest, "flow state"},
				"other issuer":   {url.Values{"code": {"x"}, "state": qA["state"], "iss": {"https://evil.example"}}, stA, sdk.ErrInvalidCredentials, "issuer"},
				"unknown code":   {url.Values{"code": {"made-up"}, "state": qA["state"]}, stA, sdk.ErrInvalidCredentials, "refused the code"},
				"empty callback": {url.Values{}, nil, sdk.ErrInvalidRequest, ""},
			} {
				_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: tc.q, State: tc.state})
				wantErr(t, name, err, tc.want, tc.msg)
			}
			_, err = c.Begin(ctxT(t), sdk.BeginRequest{})
			wantErr(t, "Begin without callback", err, sdk.ErrInvalidRequest)
			_, err = c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL, Scopes: []string{"two words"}})
			wantErr(t, "Begin with a bad scope", err, sdk.ErrInvalidRequest)
		})
	}
}

// TestNativeSignIn: the app signs in at the real OP with its own client
// and nonce, then hands the ID token to handoff.
func TestNativeSignIn(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, nil))

			// The nonce as it is in the token (Android, most SDKs).
			idToken := op.AppSignIn(t, mobileClient, mobileRedir, "raw-nonce-1", alice)
			id, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken, "nonce": "raw-nonce-1", "captcha": "ignored"})})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != alice.ID || id.Email != alice.Email || !id.EmailVerified || id.Name != "Alice Liddell" {
				t.Fatalf("identity %+v", id)
			}

			// The app passed sha256(raw) to the IdP (Sign in with Apple,
			// Google on iOS) and sends the raw nonce.
			sum := sha256.Sum256([]byte("raw-nonce-2"))
			idToken = op.AppSignIn(t, mobileClient, mobileRedir, hex.EncodeToString(sum[:]), alice)
			if _, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken, "nonce": "raw-nonce-2"})}); err != nil {
				t.Fatalf("hashed nonce: %v", err)
			}
			_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken, "nonce": hex.EncodeToString(sum[:]) + "x"})})
			wantErr(t, "wrong nonce", err, sdk.ErrInvalidCredentials, "nonce does not match")
			_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken})})
			wantErr(t, "token nonce, request none", err, sdk.ErrInvalidCredentials, "request has none")

			// No nonce on either side is accepted.
			idToken = op.AppSignIn(t, mobileClient, mobileRedir, "", alice)
			if _, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken})}); err != nil {
				t.Fatalf("no nonce: %v", err)
			}
			// An ID token signs in once: played again (from a log, a
			// proxy, a stolen device) it is refused, also by twenty at once.
			_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken})})
			wantErr(t, "replayed ID token", err, sdk.ErrInvalidCredentials, "used already")
			fresh := op.Sign(t, op.Claims(mobileClient, alice))
			wins := 0
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if _, err := c.Verify(context.Background(), sdk.Request{Payload: payload(t, map[string]any{"id_token": fresh})}); err == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("20 concurrent sign-ins with one ID token: %d won, want 1", wins)
			}
			_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken, "nonce": "n"})})
			wantErr(t, "request nonce, token none", err, sdk.ErrInvalidCredentials, "carries none")
		})
	}
	t.Run("audience not configured", func(t *testing.T) {
		// Without audiences: [mobile-app], the app's tokens are refused.
		cfg := webConfig(op, nil)
		delete(cfg, "audiences")
		c := connect(t, "direct", cfg)
		idToken := op.AppSignIn(t, mobileClient, mobileRedir, "", alice)
		_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": idToken})})
		wantErr(t, "audience", err, sdk.ErrInvalidCredentials, `audience ["mobile-app"]`)
	})
}

// TestNativeRefusals signs tokens with keys of the test's making to see
// each check of the verifier refuse them.
func TestNativeRefusals(t *testing.T) {
	op := newOP(t)
	forged := oidctest.NewKey(t)
	forged.ID = op.Key().ID // the OP's key id, another key
	stranger := oidctest.NewKey(t)
	claims := func(change func(map[string]any)) map[string]any {
		c := op.Claims(mobileClient, alice)
		c["nonce"] = "n1"
		if change != nil {
			change(c)
		}
		return c
	}
	sign := func(change func(map[string]any)) string { return op.Sign(t, claims(change)) }
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, map[string]any{"audiences": []string{mobileClient, "ios-app"}}))
			verify := func(token, nonce string) (sdk.Identity, error) {
				p := map[string]any{"id_token": token}
				if nonce != "" {
					p["nonce"] = nonce
				}
				return c.Verify(ctxT(t), sdk.Request{Payload: payload(t, p)})
			}
			if id, err := verify(sign(nil), "n1"); err != nil || id.Subject != alice.ID {
				t.Fatalf("a good token: %+v %v", id, err)
			}
			for _, tc := range []struct {
				name, token, nonce string
				want               error
				msg                string
			}{
				{"wrong nonce", sign(nil), "n2", sdk.ErrInvalidCredentials, "nonce does not match"},
				{"expired", sign(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "n1", sdk.ErrInvalidCredentials, "expired"},
				{"wrong audience", sign(func(c map[string]any) { c["aud"] = "someone-else" }), "n1", sdk.ErrInvalidCredentials, `audience ["someone-else"]`},
				{"wrong issuer", sign(func(c map[string]any) { c["iss"] = "https://evil.example" }), "n1", sdk.ErrInvalidCredentials, "different provider"},
				{"bad signature", forged.Sign(t, claims(nil)), "n1", sdk.ErrInvalidCredentials, "signature is not valid"},
				{"tampered payload", tamper(t, sign(nil)), "n1", sdk.ErrInvalidCredentials, "signature is not valid"},
				{"unknown key id", stranger.Sign(t, claims(nil)), "n1", sdk.ErrInvalidCredentials, "does not publish"},
				{"several audiences, no azp", sign(func(c map[string]any) { c["aud"] = []string{mobileClient, "ios-app"} }), "n1", sdk.ErrInvalidCredentials, "no azp"},
				{"several audiences, foreign azp", sign(func(c map[string]any) {
					c["aud"] = []string{mobileClient, "other"}
					c["azp"] = "other"
				}), "n1", sdk.ErrInvalidCredentials, "(azp)"},
				{"no subject", sign(func(c map[string]any) { delete(c, "sub") }), "n1", sdk.ErrInvalidCredentials, `no "sub" claim`},
				{"alg none", unsigned(t, claims(nil)), "n1", sdk.ErrInvalidCredentials, ""},
				{"not a JWT", "not.a.jwt", "n1", sdk.ErrInvalidCredentials, ""},
			} {
				_, err := verify(tc.token, tc.nonce)
				wantErr(t, tc.name, err, tc.want, tc.msg)
			}
			if id, err := verify(sign(func(c map[string]any) {
				c["aud"] = []string{mobileClient, "ios-app"}
				c["azp"] = "ios-app"
			}), "n1"); err != nil || id.Subject != alice.ID {
				t.Fatalf("several audiences with an accepted azp: %v", err)
			}
			for name, p := range map[string]string{
				"no id_token":     `{"nonce":"n1"}`,
				"empty id_token":  `{"id_token":""}`,
				"number id_token": `{"id_token":5}`,
				"number nonce":    `{"id_token":"a.b.c","nonce":5}`,
				"too long":        `{"id_token":"` + strings.Repeat("a", maxIDToken+1) + `"}`,
			} {
				_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(p)})
				wantErr(t, name, err, sdk.ErrInvalidRequest)
			}
		})
	}
}

// tamper changes a signed token's payload (the subject) and keeps its
// signature.
func tamper(t *testing.T, token string) string {
	parts := strings.Split(token, ".")
	return parts[0] + "." + b64(t, map[string]any{"sub": "mallory", "iss": "x"}) + "." + parts[2]
}

// unsigned is a token with alg none.
func unsigned(t *testing.T, claims map[string]any) string {
	return b64(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(t, claims) + "."
}

func b64(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newStallServer is an IdP whose discovery answers and whose JWKS hangs
// until stall is closed. It returns the issuer.
func newStallServer(t *testing.T, stall chan struct{}) string {
	var issuer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": issuer, "authorization_endpoint": issuer + "/authorize",
				"token_endpoint": issuer + "/token", "jwks_uri": issuer + "/keys",
			})
			return
		}
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		http.Error(w, "late", http.StatusGatewayTimeout)
	}))
	t.Cleanup(srv.Close)
	issuer = srv.URL
	return issuer
}

// TestKeyRotation: after the OP rotates its key, a token with the new key
// id makes the verifier fetch the JWKS again, once; a made-up key id right
// after does not make it fetch again.
func TestKeyRotation(t *testing.T) {
	op := newOP(t)
	c := connect(t, "direct", webConfig(op, nil))
	verify := func(token string) error {
		_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": token})})
		return err
	}
	old := op.Key()
	if err := verify(op.Sign(t, op.Claims(webClient, alice))); err != nil {
		t.Fatal(err)
	}
	if n := op.Requests(oidctest.KeysPath); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	if err := verify(op.Sign(t, op.Claims(webClient, alice))); err != nil {
		t.Fatal(err)
	}
	if n := op.Requests(oidctest.KeysPath); n != 1 {
		t.Fatalf("JWKS fetched %d times for a known key, want 1", n)
	}

	op.Rotate(t, false) // the old key is withdrawn
	if err := verify(op.Sign(t, op.Claims(webClient, alice))); err != nil {
		t.Fatalf("a token with the rotated key: %v", err)
	}
	if n := op.Requests(oidctest.KeysPath); n != 2 {
		t.Fatalf("JWKS fetched %d times after the rotation, want 2", n)
	}
	// A token with the withdrawn key, and one with a key nobody knows, are
	// refused without another fetch (one per keysRefetchEvery).
	wantErr(t, "withdrawn key", verify(old.Sign(t, op.Claims(webClient, alice))), sdk.ErrInvalidCredentials, "does not publish")
	wantErr(t, "unknown key", verify(oidctest.NewKey(t).Sign(t, op.Claims(webClient, alice))), sdk.ErrInvalidCredentials, "does not publish")
	if n := op.Requests(oidctest.KeysPath); n != 2 {
		t.Fatalf("JWKS fetched %d times for unknown keys, want still 2", n)
	}

	// The redirect flow still works with the new key.
	q, st := browse(t, c, op)
	if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st}); err != nil {
		t.Fatalf("Complete after rotation: %v", err)
	}
}

// TestKeysConcurrent: many first verifications at once share one JWKS
// fetch.
func TestKeysConcurrent(t *testing.T) {
	op := newOP(t)
	c := connect(t, "direct", webConfig(op, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		token := op.Sign(t, op.Claims(webClient, alice))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Verify(context.Background(), sdk.Request{Payload: payload(t, map[string]any{"id_token": token})})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := op.Requests(oidctest.KeysPath); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

// TestIdPDown: an IdP down at start does not fail Configure; calls answer
// ErrUnavailable until it is back, then work without a restart. An IdP
// that goes down mid-flow, or whose JWKS is down, is unavailable too.
func TestIdPDown(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			op.SetDown(true)
			c := connect(t, mode, webConfig(op, nil)) // Configure succeeds
			token := op.Sign(t, op.Claims(webClient, alice))
			verify := func() error {
				_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": token})})
				return err
			}
			wantErr(t, "Verify while down", verify(), sdk.ErrUnavailable)
			_, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
			wantErr(t, "Begin while down", err, sdk.ErrUnavailable)

			op.SetDown(false)
			time.Sleep(20 * time.Millisecond) // the test factory's retry pause
			if err := verify(); err != nil {
				t.Fatalf("Verify after the IdP came back: %v", err)
			}

			// Down between the login and the callback: the exchange fails.
			q, st := browse(t, c, op)
			op.SetDown(true)
			_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st})
			wantErr(t, "Complete while down", err, sdk.ErrUnavailable)
			op.SetDown(false)
		})
	}
	t.Run("jwks down", func(t *testing.T) {
		c := connect(t, "direct", webConfig(op, nil)) // discovery done
		op.SetDown(true)
		defer op.SetDown(false)
		_, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": op.Sign(t, op.Claims(webClient, alice))})})
		wantErr(t, "Verify with the JWKS down", err, sdk.ErrUnavailable)
	})
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		issuer := "http://" + l.Addr().String()
		l.Close()
		c := connect(t, "grpc", map[string]any{"issuer": issuer, "client_id": "x"})
		_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": "a.b.c"})})
		wantErr(t, "Verify", err, sdk.ErrUnavailable)
		_, err = c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
		wantErr(t, "Begin", err, sdk.ErrUnavailable)
	})
	t.Run("slow IdP and a caller's deadline", func(t *testing.T) {
		stall := make(chan struct{})
		issuer := newStallServer(t, stall)
		defer close(stall)
		c := connect(t, "direct", map[string]any{"issuer": issuer, "client_id": "x", "http_timeout": "5s"})
		claims := op.Claims("x", alice)
		claims["iss"] = issuer
		token := oidctest.NewKey(t).Sign(t, claims)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Verify(ctx, sdk.Request{Payload: payload(t, map[string]any{"id_token": token})})
		wantErr(t, "Verify", err, sdk.ErrUnavailable)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Verify took %s past its deadline", took)
		}
	})
}

// TestIssuerMismatch: an IdP that names another issuer is a config error
// (a trailing slash matters).
func TestIssuerMismatch(t *testing.T) {
	op := newOP(t)
	c := providertest.Open(t, factory)
	err := c.Configure(ctxT(t), providertest.RawConfig(t, map[string]any{"issuer": op.Issuer + "/", "client_id": webClient}))
	wantErr(t, "Configure", err, sdk.ErrInvalidRequest, "issuer", "calls itself \""+op.Issuer+"\"")
}

// TestClaimsMapping reads the identity from configured claim names.
func TestClaimsMapping(t *testing.T) {
	op := newOP(t)
	c := connect(t, "grpc", webConfig(op, map[string]any{"claims": map[string]any{
		"subject": "https://example.com/uid", "email": "mail", "email_verified": "mail_ok", "phone": "tel",
	}}))
	claims := op.Claims(webClient, alice)
	claims["https://example.com/uid"] = 12345678901234567
	claims["mail"] = "ALICE@example.com"
	claims["mail_ok"] = "true"
	claims["tel"] = "+15551234"
	delete(claims, "name")
	claims["given_name"], claims["family_name"] = "Alice", "L."
	id, err := c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": op.Sign(t, claims)})})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "12345678901234567" || id.Email != "ALICE@example.com" || !id.EmailVerified || id.Phone != "+15551234" || id.Name != "Alice L." {
		t.Fatalf("identity %+v", id)
	}
	claims["mail_ok"] = "no"
	claims["jti"] = "another-token" // a new token: a jti signs in once
	id, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": op.Sign(t, claims)})})
	if err != nil || id.EmailVerified {
		t.Fatalf("email_verified \"no\": %+v %v", id, err)
	}
}

// TestConformance runs the providertest suite, directly and through the
// go-plugin gRPC pair.
func TestConformance(t *testing.T) {
	op := newOP(t)
	providertest.Run(t, providertest.Suite{
		New:    New,
		Config: webConfig(op, nil),
		Valid: func(t *testing.T, _ providertest.Conn) json.RawMessage {
			return payload(t, map[string]any{"id_token": op.Sign(t, op.Claims(mobileClient, alice))})
		},
	})
}

func TestDescribe(t *testing.T) {
	info, err := New().Describe(context.Background())
	if err != nil || info.Name != "oidc" || !info.ProvesIdentity || len(info.Flows) != 2 || info.Flows[0] != sdk.FlowDirect || info.Flows[1] != sdk.FlowRedirect {
		t.Fatalf("%+v %v", info, err)
	}
	_, err = New().Verify(context.Background(), sdk.Request{Payload: json.RawMessage(`{"id_token":"a.b.c"}`)})
	wantErr(t, "Verify before Configure", err, sdk.ErrUnavailable)
}

// TestAuthorizeParams: the configured extra parameters reach the authorize
// URL, and the flow's own parameters cannot be overridden.
func TestAuthorizeParams(t *testing.T) {
	op := newOP(t)
	c := connect(t, "direct", webConfig(op, map[string]any{"authorize_params": map[string]any{"audience": "https://api.example.com", "prompt": "login"}}))
	res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL, RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(res.AuthURL)
	if q := u.Query(); q.Get("audience") != "https://api.example.com" || q.Get("prompt") != "login" || q.Get("code_challenge_method") != "S256" {
		t.Fatalf("authorize URL %s", u)
	}
	for _, k := range []string{"state", "redirect_uri", "nonce", "code_challenge"} {
		_, err := ParseConfig(payload(t, map[string]any{"issuer": op.Issuer, "client_id": webClient, "authorize_params": map[string]any{k: "x"}}))
		if err == nil || !strings.Contains(err.Error(), "authorize_params."+k+": set by the flow itself") {
			t.Errorf("authorize_params.%s: %v", k, err)
		}
	}
}
