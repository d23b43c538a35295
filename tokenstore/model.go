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
	IP        string    `json:"ip,omitempty"`
	UserAgent string    `json:"userAgent,omitempty"`
	// Attempts counts the wrong guesses made at the user's secrets while
	// this token was live; at MaxAttempts it burns.
	Attempts int `json:"attempts,omitempty"`
}

// MintRequest says what token to mint. Zero Length and Expire take the
// core's defaults.
type MintRequest struct {
	UserID    string
	Length    int
	Expire    time.Duration
	Provider  string
	IP        string
	UserAgent string
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
	Factors     []string  `json:"factors"`
	IP          string    `json:"ip,omitempty"`
	UserAgent   string    `json:"userAgent,omitempty"`
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
