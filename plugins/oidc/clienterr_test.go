package oidc

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

const wrongSecret = "not-the-client-secret-9d2e"

// TestWrongClientSecret: the real OP refuses handoff's client at the token
// endpoint (a wrong client_secret: invalid_client). Complete fails with
// ErrMisconfigured, which survives the plugin boundary, and whose message
// names the OAuth2 error and the client_id, never the secret: the host
// tells the operator that, not "provider unavailable".
func TestWrongClientSecret(t *testing.T) {
	op := newOP(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			c := connect(t, mode, webConfig(op, map[string]any{"client_secret": wrongSecret}))
			q, st := browse(t, c, op)
			_, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st, CallbackURL: callbackURL})
			wantErr(t, "wrong secret", err, sdk.ErrMisconfigured, "refused the client credentials (invalid_client)", `client_id "`+webClient+`"`)
			if errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrInvalidCredentials) {
				t.Fatalf("%v also matches unavailable or invalid credentials", err)
			}
			if strings.Contains(err.Error(), wrongSecret) || strings.Contains(err.Error(), q.Get("code")) {
				t.Fatalf("the error %q holds the secret or the code", err)
			}
		})
	}
}

// TestWrongClientSecretLog: the refusal is logged at ERROR, saying the IdP
// refused the client credentials, with the OAuth2 error and without the
// secret (the host re-logs it under the provider's name).
func TestWrongClientSecretLog(t *testing.T) {
	op := newOP(t)
	var v *Verifier
	c := providertest.Direct(func() sdk.Verifier { v = factory().(*Verifier); return v })
	if err := c.Configure(ctxT(t), providertest.RawConfig(t, webConfig(op, map[string]any{"client_secret": wrongSecret}))); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	v.log = slog.New(slog.NewTextHandler(&buf, nil)).With("client_id", webClient) // as Configure scopes it
	q, st := browse(t, c, op)
	if _, err := c.Complete(ctxT(t), sdk.CompleteRequest{Query: q, State: st}); sdkCode(err) != sdk.CodeMisconfigured {
		t.Fatalf("Complete: %v", err)
	}
	line := buf.String()
	for _, want := range []string{"level=ERROR", "refused the client credentials", "error=invalid_client", "client_id=" + webClient} {
		if !strings.Contains(line, want) {
			t.Errorf("the log %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, wrongSecret) || strings.Contains(line, webSecret) {
		t.Fatalf("the log holds a secret: %s", line)
	}
}

func sdkCode(err error) sdk.Code {
	if err == nil {
		return 0
	}
	return sdk.CodeOf(err)
}

// TestTokenEndpointErrors: each OAuth2 error answer of the token endpoint
// (RFC 6749 5.2) lands on the side whose fault it is. The IdP refusing
// handoff's client is the operator's (ErrMisconfigured); refusing the code
// or the request is the user's (ErrInvalidCredentials, as a used or
// expired code: invalid_grant); an IdP failing is unavailable.
func TestTokenEndpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		code   string
		want   error
	}{
		{"invalid_client", http.StatusUnauthorized, "invalid_client", sdk.ErrMisconfigured},
		{"invalid_client as 400", http.StatusBadRequest, "invalid_client", sdk.ErrMisconfigured},
		{"unauthorized_client", http.StatusBadRequest, "unauthorized_client", sdk.ErrMisconfigured},
		{"unsupported_grant_type", http.StatusBadRequest, "unsupported_grant_type", sdk.ErrMisconfigured},
		{"401 without a code", http.StatusUnauthorized, "", sdk.ErrMisconfigured},
		{"invalid_grant", http.StatusBadRequest, "invalid_grant", sdk.ErrInvalidCredentials},
		{"invalid_request", http.StatusBadRequest, "invalid_request", sdk.ErrInvalidCredentials},
		{"invalid_scope", http.StatusBadRequest, "invalid_scope", sdk.ErrInvalidCredentials},
		{"400 without a code", http.StatusBadRequest, "", sdk.ErrInvalidCredentials},
		{"500", http.StatusInternalServerError, "server_error", sdk.ErrUnavailable},
		{"429", http.StatusTooManyRequests, "", sdk.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				body := map[string]string{}
				if tc.code != "" {
					body["error"], body["error_description"] = tc.code, "as the test asked"
				}
				_ = json.NewEncoder(w).Encode(body)
			}))
			t.Cleanup(tokens.Close)
			f := newFakeIdP(t)
			f.token = tokens.URL + "/token"
			c := connect(t, "grpc", map[string]any{"issuer": f.URL, "client_id": webClient, "client_secret": wrongSecret})
			res, err := c.Begin(ctxT(t), sdk.BeginRequest{CallbackURL: callbackURL})
			if err != nil {
				t.Fatal(err)
			}
			var st flowState
			if err := json.Unmarshal(res.State, &st); err != nil {
				t.Fatal(err)
			}
			_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: url.Values{"state": {st.State}, "code": {"the-code"}}, State: res.State})
			wantErr(t, tc.name, err, tc.want)
			if sdk.CodeOf(err) != tc.want.(*sdk.Error).Code {
				t.Fatalf("code %v, want %v", sdk.CodeOf(err), tc.want)
			}
			if tc.code != "" && tc.status < 500 && !strings.Contains(err.Error(), tc.code) {
				t.Errorf("the error %q does not name %s", err, tc.code)
			}
			if strings.Contains(err.Error(), wrongSecret) {
				t.Fatalf("the error %q holds the secret", err)
			}
		})
	}
}
