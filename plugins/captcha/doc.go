// Package captcha is handoff's built-in "captcha" plugin: hCaptcha,
// reCAPTCHA (v2, and v3 with a minimum score and an expected action) and
// Cloudflare Turnstile.
//
// It is a guard (sdk.Guard): listed in another provider's `guards`, it
// passes a request only when the payload's token (field `captcha` by
// default) is accepted by the provider's siteverify endpoint, was solved
// on an allowed hostname, carries the expected action and, for reCAPTCHA
// v3, a high enough score. Each token passes at most once: a hash of it is
// kept in the host's KV (put-if-absent, for ReplayWindow), so a replay is
// refused locally even if the provider would accept it again.
//
// It is also a verifier of its own, for a captcha-protected login: Verify
// runs the same check and returns the identity the payload names
// ({captcha, email} or {captcha, userId}). A solved captcha proves nothing
// about who someone is, so Describe reports ProvesIdentity false and the
// daemon delivers its secrets only out of band (webhook, email or sms), never
// in the response. README.md documents the config, payloads and errors.
//
// The package imports only providers/sdk and runs out of process like any
// third-party plugin: the daemon re-executes itself as `handoff plugin
// captcha`, which serves New.
package captcha
