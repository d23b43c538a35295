// Package oauth2 is handoff's built-in "oauth2" verifier: sign-in with an
// OAuth2 identity provider that has no OpenID Connect, by the browser
// redirect flow (authorization code, state, and PKCE S256 where the IdP
// takes it). There is no ID token to check, so who signed in is read from
// the IdP's user API with the access token the code is redeemed for.
//
// Two presets know their IdP's API: github (the numeric user id, and the
// verified primary email from /user/emails, since the email on /user is
// the public one and may be unverified; GitHub Enterprise Server through
// base_url) and discord. The generic mode takes the three endpoints and a
// map of dotted JSON paths into the user answer. The plugin imports only
// providers/sdk of handoff and runs out of process like any third-party
// plugin. README.md documents the config, the IdP console settings and
// the errors.
package oauth2
