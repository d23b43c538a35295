package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/handoffd/handoff/providers/sdk"
)

const (
	// appleIssuer is Sign in with Apple's issuer, and the audience of the
	// client secret JWT.
	appleIssuer = "https://appleid.apple.com"
	// appleSecretTTL is the life of each client secret JWT. Apple takes
	// up to six months; the plugin signs a fresh one per code exchange,
	// so a short one leaks nothing lasting.
	appleSecretTTL = 5 * time.Minute
	// maxAppleName bounds the name taken from the callback's user field.
	maxAppleName = 256
)

// appleScopes are Apple's scopes: it knows name, not profile.
var appleScopes = []string{"openid", "email", "name"}

// loadAppleKey reads the .p8 file Apple gives for a Sign in with Apple
// key: a PKCS #8 PEM of a P-256 private key.
func (c Config) loadAppleKey() (*ecdsa.PrivateKey, error) {
	bad := func(msg string) error { return &sdk.ConfigError{Key: "private_key_file", Message: msg} }
	b, err := os.ReadFile(c.PrivateKeyFile)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, bad("cannot read " + c.PrivateKeyFile + ": " + msg)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, bad(c.PrivateKeyFile + " is not a PEM \"PRIVATE KEY\" (the .p8 file Apple gives)")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	ec, ok := key.(*ecdsa.PrivateKey)
	if err != nil || !ok || ec.Curve != elliptic.P256() {
		return nil, bad(c.PrivateKeyFile + " does not hold a P-256 (ES256) private key")
	}
	return ec, nil
}

// appleClientSecret signs the client secret Sign in with Apple wants: an
// ES256 JWT with the key id, issued by the team for the services id
// (client_id), for Apple's audience.
func appleClientSecret(c Config, key *ecdsa.PrivateKey, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: c.KeyID}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(map[string]any{
		"iss": c.TeamID, "sub": c.ClientID, "aud": appleIssuer,
		"iat": now.Unix(), "exp": now.Add(appleSecretTTL).Unix(),
	})
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// clientSecret is the secret of the code exchange: the configured one,
// or for Sign in with Apple a JWT signed now. A signing failure gives "",
// which the IdP refuses as invalid_client.
func (v *Verifier) clientSecret() string {
	if v.appleKey == nil {
		return v.secret
	}
	s, err := appleClientSecret(v.cfg, v.appleKey, v.now())
	if err != nil {
		v.log.Error("cannot sign the Sign in with Apple client secret", "err", err.Error())
	}
	return s
}

// appleName takes the person's name from the callback's user field,
// which Apple sends (as JSON, in the form_post) on the first sign-in
// only, when the ID token has none. The field is not signed, so only the
// display name is taken from it, never the email.
func appleName(q url.Values, claims map[string]any) {
	if sdk.ClaimString(claims["name"]) != "" {
		return
	}
	var u struct {
		Name struct {
			FirstName string `json:"firstName"`
			LastName  string `json:"lastName"`
		} `json:"name"`
	}
	if json.Unmarshal([]byte(q.Get("user")), &u) != nil {
		return
	}
	name := strings.TrimSpace(strings.TrimSpace(u.Name.FirstName) + " " + strings.TrimSpace(u.Name.LastName))
	if name != "" && len(name) <= maxAppleName {
		claims["name"] = name
	}
}
