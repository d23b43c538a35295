package sdk

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// Flows a verifier can serve, reported in Info.Flows.
const (
	// FlowDirect is POST /v1/providers/{name}/verify: the client sends a
	// payload and Verify answers with the identity.
	FlowDirect = "direct"
	// FlowRedirect is the browser flow through an IdP: Begin and Complete
	// (the verifier implements Redirector).
	FlowRedirect = "redirect"
)

// Capabilities the SDK reports in Info.Capabilities, one per optional
// interface the verifier implements.
const (
	CapRedirector = "redirector"
	CapEnroller   = "enroller"
	CapGuard      = "guard"
	CapRefresher  = "refresher"
)

// Factory makes a fresh, unconfigured Verifier. The same factory serves a
// built-in (handoff re-executes itself as `handoff plugin <kind>`) and a
// third-party plugin (its main calls Serve(factory)).
type Factory func() Verifier

// Verifier proves who someone is from a payload the client sends. It is the
// one interface every plugin implements; optional abilities are the small
// interfaces Redirector, Refresher, Enroller and Guard, found by type assertion.
//
// A Verifier must be safe for concurrent use once configured: the host
// calls Verify from many requests at once.
type Verifier interface {
	// Describe reports what the plugin is. It may be called before
	// Configure.
	Describe(ctx context.Context) (Info, error)
	// Configure hands the verifier its provider's config section (JSON, as
	// written in handoff's config file) and the host's services. Decode it
	// with DecodeConfig so unknown keys are errors, and report bad values
	// as *ConfigError naming the key. It is called once per process start,
	// and again with the same config after a restart.
	Configure(ctx context.Context, cfg json.RawMessage, host Host) error
	// Verify checks a request's payload and returns who it proves. It
	// returns ErrInvalidCredentials (possibly wrapped with a message) for a
	// wrong secret, ErrInvalidRequest for a payload it cannot read,
	// ErrUnavailable when a service it depends on is down.
	Verify(ctx context.Context, req Request) (Identity, error)
}

// Redirector is a verifier that signs people in through a browser redirect
// (OIDC, OAuth2). Keep flow state in BeginResult.State, which the host keeps
// and hands back to Complete, never in the plugin's memory: a restarted
// plugin must still finish a flow.
type Redirector interface {
	Begin(ctx context.Context, req BeginRequest) (BeginResult, error)
	Complete(ctx context.Context, req CompleteRequest) (Identity, error)
}

// Enroller registers a credential for a user: sets a password, registers a
// biometric template, creates a TOTP secret.
type Enroller interface {
	Enroll(ctx context.Context, req EnrollRequest) (EnrollResult, error)
}

// Guard passes or fails a request without proving an identity (captcha).
// The host runs a provider's guards before its verifier.
type Guard interface {
	Check(ctx context.Context, req Request) error
}

// Info describes a verifier.
type Info struct {
	// Name is the plugin's name, e.g. "totp".
	Name string
	// Version is the plugin's semantic version.
	Version string
	// Flows lists FlowDirect and/or FlowRedirect.
	Flows []string
	// ProvesIdentity says a successful Verify proves who the person is on
	// its own (a password, a TOTP code), so the host may hand the minted
	// secret back in the HTTP response. A captcha proves nothing alone.
	ProvesIdentity bool
	// Capabilities is filled by the SDK from the optional interfaces the
	// verifier implements (CapRedirector, CapEnroller, CapGuard, CapRefresher); whatever
	// Describe puts here is replaced.
	Capabilities []string
}

// Request is one verification: the client's JSON payload, passed through
// untouched, and facts about the HTTP request.
type Request struct {
	Payload   json.RawMessage
	ClientIP  string
	UserAgent string
	RequestID string
}

// Identity is who a verification proved. Subject is stable and unique
// within the provider (the host links it to a user); the rest is optional.
//
// The host refuses (502 provider_invalid_identity) an identity whose
// subject is empty or over 1 KiB, whose email is over 254 bytes, phone over
// 64 bytes or name over 128 characters, whose claims are over 32 KiB as
// JSON, or whose subject, email, phone or name is not valid UTF-8 or holds
// control, line-separator or bidi override characters. A plugin that takes
// these from a client should refuse bad input itself, with
// ErrInvalidRequest, so the client gets a 400.
type Identity struct {
	Subject       string
	Email         string
	EmailVerified bool
	Phone         string
	Name          string
	Claims        map[string]any
	// AccessToken, AccessTokenExpiry (zero: unknown) and RefreshToken are
	// the IdP's tokens, which only Complete reports, all optional. The
	// host keeps them sealed with the session the sign-in opens, never
	// logs them, and returns them in the session model to its owner.
	AccessToken       string
	AccessTokenExpiry time.Time
	RefreshToken      string
}

// BeginRequest starts a redirect flow.
type BeginRequest struct {
	// CallbackURL is where the IdP must send the browser back to.
	CallbackURL string
	Scopes      []string
	RequestID   string
}

// BeginResult is the IdP's authorize URL, which must carry a state query
// parameter, and opaque flow state (nonce, PKCE verifier) that the host
// keeps and returns to Complete.
type BeginResult struct {
	AuthURL string
	State   []byte
}

// CompleteRequest finishes a redirect flow.
type CompleteRequest struct {
	// Query is the callback's query (or form) parameters.
	Query url.Values
	// State is BeginResult.State of this flow.
	State       []byte
	CallbackURL string
}

// EnrollRequest registers a credential for the user UserID.
type EnrollRequest struct {
	UserID  string
	Payload json.RawMessage
}

// EnrollResult reports what was enrolled. Subject is the identity subject
// that a later Verify returns for this user; the host links it to the user.
// Data is JSON handed back to the caller (a TOTP secret, say); nil is {}.
type EnrollResult struct {
	Subject string
	Data    json.RawMessage
}

// capabilities lists the optional interfaces v implements.
func capabilities(v Verifier) []string {
	caps := []string{}
	if _, ok := v.(Redirector); ok {
		caps = append(caps, CapRedirector)
	}
	if _, ok := v.(Enroller); ok {
		caps = append(caps, CapEnroller)
	}
	if _, ok := v.(Guard); ok {
		caps = append(caps, CapGuard)
	}
	if _, ok := v.(Refresher); ok {
		caps = append(caps, CapRefresher)
	}
	return caps
}

// Refresher is a Redirector that can renew the IdP's access token of a
// session with the refresh token its sign-in reported (Appwrite's
// updateSession).
type Refresher interface {
	Refresh(ctx context.Context, req RefreshRequest) (RefreshResult, error)
}

// RefreshRequest carries the refresh token to trade.
type RefreshRequest struct {
	RefreshToken string
}

// RefreshResult are the IdP's new tokens. An empty RefreshToken keeps
// the one that was traded.
type RefreshResult struct {
	AccessToken       string
	AccessTokenExpiry time.Time
	RefreshToken      string
}
