package tokenstore

import "time"

// User is one account.
type User struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Email             string            `json:"email,omitempty"`
	Phone             string            `json:"phone,omitempty"`
	EmailVerification bool              `json:"emailVerification,omitempty"`
	PhoneVerification bool              `json:"phoneVerification,omitempty"`
	Status            bool              `json:"status"`
	Labels            []string          `json:"labels,omitempty"`
	Prefs             map[string]any    `json:"prefs,omitempty"`
	CreatedAt         time.Time         `json:"createdAt"`
	UpdatedAt         time.Time         `json:"updatedAt"`
	AccessedAt        time.Time         `json:"accessedAt,omitzero"`
	Extra             map[string]string `json:"extra,omitempty"`
}

// NewUser is what CreateUser takes. An empty ID (or "unique()") gets a
// generated one.
type NewUser struct {
	ID                string
	Email             string
	Phone             string
	Name              string
	EmailVerification bool
}

// Token is a minted one-time secret, as stored (without the secret).
type Token struct {
	ID        string    `json:"id"`
	UserID    string    `json:"userId"`
	Hash      []byte    `json:"hash"` // HMAC-SHA256(pepper, secret)
	CreatedAt time.Time `json:"createdAt"`
	Expire    time.Time `json:"expire"`
	Provider  string    `json:"provider,omitempty"` // the verifier that minted it, if any
	// ProviderUID is the subject of the identity the provider signed in,
	// which the session the token opens carries.
	ProviderUID string `json:"providerUid,omitempty"`
	// ProviderTokens are the IdP's tokens (ProviderTokens as JSON), sealed
	// for this token's id; the exchange seals them again for the session.
	ProviderTokens []byte `json:"providerTokens,omitempty"`
	// SessionID is the id of the session the token opens, chosen at mint
	// so the IdP's tokens can be sealed for it then; empty in tokens
	// minted before it existed, whose session gets a fresh id.
	SessionID string `json:"sessionId,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
	// Attempts counts the wrong guesses made at the user's secrets while
	// this token was live; at MaxAttempts it burns.
	Attempts int `json:"attempts,omitempty"`
}

// MintRequest says what token to mint. Zero Length and Expire take the
// core's defaults.
type MintRequest struct {
	UserID   string
	Length   int
	Expire   time.Duration
	Provider string
	// ProviderUID and ProviderTokens are what a sign-in through Provider
	// leaves on the session the token opens.
	ProviderUID    string
	ProviderTokens ProviderTokens
	IP             string
	UserAgent      string
}

// ProviderTokens are the tokens an IdP issued at a sign-in, kept with the
// session it opened. They are stored only sealed: a core without a Sealer
// drops them.
type ProviderTokens struct {
	AccessToken       string    `json:"accessToken,omitempty"`
	AccessTokenExpiry time.Time `json:"accessTokenExpiry,omitzero"`
	RefreshToken      string    `json:"refreshToken,omitempty"`
}

// IsZero reports whether there is no token.
func (t ProviderTokens) IsZero() bool {
	return t.AccessToken == "" && t.RefreshToken == ""
}

// Session is a logged-in device, as stored (without the secret).
type Session struct {
	ID          string    `json:"id"`
	UserID      string    `json:"userId"`
	Hash        []byte    `json:"hash"` // SHA-256(secret)
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	Expire      time.Time `json:"expire"`
	Provider    string    `json:"provider"`
	ProviderUID string    `json:"providerUid,omitempty"`
	// ProviderTokens are the IdP's tokens, sealed for the session's id;
	// Core.ProviderTokens opens them.
	ProviderTokens []byte   `json:"providerTokens,omitempty"`
	Factors        []string `json:"factors"`
	IP             string   `json:"ip,omitempty"`
	UserAgent      string   `json:"userAgent,omitempty"`
}

// Client describes who is asking, for the records a session or token keeps.
type Client struct {
	IP        string
	UserAgent string
}

// Identity links an external subject (a provider's user) to a user.
type Identity struct {
	Provider      string         `json:"provider"`
	Subject       string         `json:"subject"`
	UserID        string         `json:"userId"`
	Email         string         `json:"email,omitempty"`
	EmailVerified bool           `json:"emailVerified,omitempty"`
	Phone         string         `json:"phone,omitempty"`
	Name          string         `json:"name,omitempty"`
	Claims        map[string]any `json:"claims,omitempty"`
	CreatedAt     time.Time      `json:"createdAt"`
	UpdatedAt     time.Time      `json:"updatedAt"`
}

// LinkPolicy says what ResolveIdentity may do with an identity it has not
// seen before.
type LinkPolicy struct {
	// LinkByEmail links to the user owning the identity's email, when the
	// provider vouches the email is verified.
	LinkByEmail bool
	// Create makes a new user when nothing links.
	Create bool
}

// APIKey is a server credential with scopes, as stored (without the key).
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	Hash      []byte    `json:"hash"` // SHA-256(key)
	CreatedAt time.Time `json:"createdAt"`
	Expire    time.Time `json:"expire,omitzero"`
}

// HasScope reports whether the key grants scope.
func (k APIKey) HasScope(scope string) bool {
	for _, s := range k.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}
