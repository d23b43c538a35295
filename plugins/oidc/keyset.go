package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/handoffd/handoff/providers/sdk"
)

const (
	// keysMaxAge is how long fetched keys are used before they are fetched
	// again on the next verification (so a key the IdP withdrew stops
	// working). When that fetch fails, the old keys keep serving.
	keysMaxAge = time.Hour
	// keysRefetchEvery bounds the re-fetches a token with an unknown key
	// id triggers: at most one per interval, so tokens with made-up key ids
	// cannot make handoff hammer the IdP.
	keysRefetchEvery = 10 * time.Second
	// maxBody bounds every answer read from the IdP.
	maxBody = 1 << 20
)

// signingAlgs are the JWS algorithms an ID token may be signed with (the
// asymmetric ones go-oidc supports; never none or HMAC).
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
}

// keySet is the IdP's JSON Web Key Set, fetched from jwks_uri and cached.
// A token signed with a key id it does not know makes it fetch the set
// again, once (the rotation strategy of OpenID Connect Core 10.1), but at
// most once per keysRefetchEvery.
//
// It implements go-oidc's KeySet. go-oidc flattens the error
// VerifySignature returns into a string, so VerifySignature also puts its
// error into the sigErrSlot found in the context, where the verifier
// reads it back with its code.
type keySet struct {
	url        string
	client     *http.Client
	log        *slog.Logger
	maxAge     time.Duration
	refetchGap time.Duration

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	fetched     time.Time // last successful fetch
	lastRefetch time.Time // last fetch for an unknown key id
	inflight    *keyFetch
}

type keyFetch struct {
	done chan struct{}
	keys []jose.JSONWebKey
	err  error
}

type sigErrSlot struct{}

func newKeySet(url string, client *http.Client, log *slog.Logger) *keySet {
	return &keySet{url: url, client: client, log: log, maxAge: keysMaxAge, refetchGap: keysRefetchEvery}
}

// VerifySignature checks jwt's signature with the IdP's keys and returns
// its payload.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.verify(ctx, jwt)
	if err != nil {
		if slot, ok := ctx.Value(sigErrSlot{}).(*error); ok {
			*slot = err
		}
	}
	return payload, err
}

func (k *keySet) verify(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, signingAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("the ID token is not a signed JWT: %w", sdk.ErrInvalidCredentials)
	}
	kid := jws.Signatures[0].Header.KeyID

	keys, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	if payload, known, ok := verifyWith(jws, keys, kid); ok {
		return payload, nil
	} else if known {
		return nil, fmt.Errorf("the ID token's signature is not valid: %w", sdk.ErrInvalidCredentials)
	}

	// An unknown key id: the IdP may have rotated its keys. Fetch the set
	// again, unless that was done a moment ago.
	k.mu.Lock()
	refetch := time.Since(k.lastRefetch) >= k.refetchGap
	if refetch {
		k.lastRefetch = time.Now()
	}
	k.mu.Unlock()
	if refetch {
		if keys, err = k.fetch(ctx); err != nil {
			return nil, err
		}
		if payload, known, ok := verifyWith(jws, keys, kid); ok {
			return payload, nil
		} else if known {
			return nil, fmt.Errorf("the ID token's signature is not valid: %w", sdk.ErrInvalidCredentials)
		}
	}
	if kid == "" {
		return nil, fmt.Errorf("no key of the identity provider verifies the ID token's signature: %w", sdk.ErrInvalidCredentials)
	}
	return nil, fmt.Errorf("the ID token is signed with key id %q, which the identity provider does not publish: %w", sdk.Truncate(kid, 64), sdk.ErrInvalidCredentials)
}

// verifyWith tries the keys with the token's key id (every key when it
// has none). known reports that a key with that id exists, so a failure is
// a bad signature, not a key the set lacks.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, known, ok bool) {
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		known = kid != ""
		if p, err := jws.Verify(key); err == nil {
			return p, true, true
		}
	}
	return nil, known, false
}

// current returns the cached keys, fetching them first when there are
// none or they are older than maxAge. Old keys keep serving while the IdP
// cannot be reached.
func (k *keySet) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	keys, fetched := k.keys, k.fetched
	k.mu.Unlock()
	if !fetched.IsZero() && time.Since(fetched) < k.maxAge {
		return keys, nil
	}
	fresh, err := k.fetch(ctx)
	if err != nil {
		if !fetched.IsZero() {
			k.log.Warn("cannot refresh the identity provider's keys; using the ones fetched before", "jwks_uri", k.url, "fetched", fetched, "err", err.Error())
			return keys, nil
		}
		return nil, err
	}
	return fresh, nil
}

// fetch gets the key set, sharing one request among concurrent callers.
// The request runs under the client's timeout, not the first caller's
// context, so one impatient caller does not fail the others.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	f := k.inflight
	if f == nil {
		f = &keyFetch{done: make(chan struct{})}
		k.inflight = f
		go func() {
			keys, err := k.get()
			f.keys, f.err = keys, err
			k.mu.Lock()
			if err == nil {
				k.keys, k.fetched = keys, time.Now()
			}
			k.inflight = nil
			k.mu.Unlock()
			close(f.done)
		}()
	}
	k.mu.Unlock()
	select {
	case <-f.done:
		return f.keys, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("fetching the identity provider's keys: %w (%w)", sdk.ErrUnavailable, ctx.Err())
	}
}

func (k *keySet) get() ([]jose.JSONWebKey, error) {
	req, err := http.NewRequest(http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri %q: %w", k.url, sdk.ErrUnavailable)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the identity provider's keys: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the identity provider's keys: %w: %s", sdk.ErrUnavailable, sdk.NetReason(err))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the identity provider's jwks_uri answered %d: %w", resp.StatusCode, sdk.ErrUnavailable)
	case len(body) > maxBody:
		return nil, fmt.Errorf("the identity provider's key set is over %d bytes: %w", maxBody, sdk.ErrUnavailable)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("the identity provider's key set is not valid: %w: %v", sdk.ErrUnavailable, err)
	}
	return keys, nil
}

// parseJWKS reads a JSON Web Key Set, skipping keys of algorithms or types
// it does not support (RFC 7517 section 5: implementations SHOULD ignore
// them) instead of refusing the whole set.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	supported := map[string]bool{}
	for _, a := range signingAlgs {
		supported[string(a)] = true
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(r, &meta); err != nil {
			return nil, err
		}
		if meta.Alg != "" && !supported[meta.Alg] {
			continue
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue
			}
			return nil, err
		}
		if !key.IsPublic() {
			continue // a private key in a public set: never use it
		}
		keys = append(keys, key)
	}
	return keys, nil
}
