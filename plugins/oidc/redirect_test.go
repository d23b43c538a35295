package oidc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
	"github.com/handoffd/handoff/providers/sdk"
)

// trap is a server that must receive nothing: where a redirect points.
type trap struct {
	*httptest.Server
	hits atomic.Int64
}

func newTrap(t *testing.T) *trap {
	tr := &trap{}
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(tr.Close)
	return tr
}

// newRedirector answers every request with status and a Location at the
// trap, same path.
func newRedirector(t *testing.T, status int, to *trap) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to.URL+r.URL.Path, status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fakeIdP is an IdP of the test's making whose endpoints can each be sent
// elsewhere (to a redirector). Its token endpoint answers with an ID token
// for nonce, signed by key.
type fakeIdP struct {
	*httptest.Server
	key                   *oidctest.Key
	jwks, token, userinfo string // endpoint URLs; default its own
	nonce                 atomic.Value
}

func newFakeIdP(t *testing.T) *fakeIdP {
	f := &fakeIdP{key: oidctest.NewKey(t)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": f.URL, "authorization_endpoint": f.URL + "/authorize",
			"token_endpoint": f.token, "userinfo_endpoint": f.userinfo, "jwks_uri": f.jwks,
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.Private.PublicKey, KeyID: f.key.ID, Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		nonce, _ := f.nonce.Load().(string)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "the-access-token", "token_type": "Bearer", "expires_in": 3600,
			"id_token": f.key.Sign(t, f.claims(webClient, nonce)),
		})
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	f.jwks, f.token, f.userinfo = f.URL+"/keys", f.URL+"/token", f.URL+"/userinfo"
	return f
}

func (f *fakeIdP) claims(aud, nonce string) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": f.URL, "sub": "user-1", "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": fmt.Sprint(now.UnixNano())}
	if nonce != "" {
		c["nonce"] = nonce
	}
	return c
}

// TestRedirectsNotFollowed: each endpoint of the IdP the plugin calls
// (discovery, JWKS, token, userinfo) answers with a redirect to another
// server. The plugin must not follow it (the token request carries the
// client secret, the code and the PKCE verifier; userinfo the access
// token): the call fails as unavailable, saying the status, with no secret
// in the error, and the other server receives nothing.
func TestRedirectsNotFollowed(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, endpoint := range []string{"discovery", "jwks", "token", "userinfo"} {
			t.Run(fmt.Sprintf("%s %d", endpoint, status), func(t *testing.T) {
				tr := newTrap(t)
				redir := newRedirector(t, status, tr)
				f := newFakeIdP(t)
				issuer := f.URL
				switch endpoint {
				case "discovery":
					issuer = redir.URL
				case "jwks":
					f.jwks = redir.URL + "/keys"
				case "token":
					f.token = redir.URL + "/token"
				case "userinfo":
					f.userinfo = redir.URL + "/userinfo"
				}
				c := connect(t, "grpc", map[string]any{"issuer": issuer, "client_id": webClient, "client_secret": webSecret, "userinfo": true})
				var err error
				switch endpoint {
				case "discovery", "jwks":
					_, err = c.Verify(ctxT(t), sdk.Request{Payload: payload(t, map[string]any{"id_token": f.key.Sign(t, f.claims(webClient, ""))})})
				default:
					res, berr := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
					if berr != nil {
						t.Fatalf("Begin: %v", berr)
					}
					var st flowState
					if err := json.Unmarshal(res.State, &st); err != nil {
						t.Fatal(err)
					}
					f.nonce.Store(st.Nonce)
					q := url.Values{"state": {st.State}, "code": {"the-code"}}
					_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: res.State, CallbackURL: callbackURL})
				}
				says := map[string]string{"discovery": "discovery", "jwks": "jwks_uri", "token": "token endpoint", "userinfo": "userinfo"}[endpoint]
				wantErr(t, endpoint, err, sdk.ErrUnavailable, says)
				if endpoint != "userinfo" && !strings.Contains(err.Error(), fmt.Sprint(status)) {
					t.Errorf("the error %q does not say the status %d", err, status)
				}
				for _, secret := range []string{webSecret, "the-code", "the-access-token"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error %q holds %q", err, secret)
					}
				}
				if n := tr.hits.Load(); n != 0 {
					t.Fatalf("the redirect was followed: the other server got %d requests", n)
				}
			})
		}
	}
}
