// Package oidc is handoff's built-in "oidc" verifier: sign-in with any
// OpenID Connect provider (presets for Auth0, Google, Microsoft Entra ID,
// Okta, Keycloak, GitLab and Apple), by the browser redirect
// flow (authorization code with PKCE S256, state and nonce) and by native
// sign-in with an ID token a mobile or single-page app already holds.
//
// Discovery reads <issuer>/.well-known/openid-configuration at start, or
// lazily at the first call when the IdP is down then; ID tokens are
// checked against the IdP's JWKS (re-fetched once for an unknown key id),
// issuer, audience, expiry, nonce and, with several audiences, azp. The
// plugin imports only providers/sdk of handoff and runs out of process
// like any third-party plugin. README.md documents the config, payloads
// and errors; package oidctest is a loopback OpenID Provider for tests.
package oidc
