package daemon

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/handoffd/handoff/tokenstore"
)

// Scopes an API key may hold.
var Scopes = []string{"users.read", "users.write", "sessions.write", "providers.read"}

// The scopes of the two roles without a key, as Appwrite's roles.php.
var (
	guestScopes = []string{"sessions.write", "public"}
	userScopes  = []string{"account", "sessions.write", "public"}
)

// caller is who made a request.
type caller struct {
	key     *tokenstore.APIKey  // a valid API key
	user    *tokenstore.User    // the user of a session or JWT
	session *tokenstore.Session // that session
	viaJWT  bool                // the user came from X-Appwrite-JWT
	ip      string              // the client's full address (sessions, plugins)
	limitIP string              // what per-IP limits count (an IPv6 /64)
	https   bool                // a trusted proxy says the client used https
}

func (c *caller) role() string {
	switch {
	case c.key != nil:
		return "applications"
	case c.user != nil:
		return "users"
	}
	return "guests"
}

func (c *caller) has(scope string) bool {
	switch {
	case c.key != nil:
		return c.key.HasScope(scope) || scope == "public"
	case c.user != nil:
		return slices.Contains(userScopes, scope)
	}
	return slices.Contains(guestScopes, scope)
}

// header reads an X-Appwrite-* header or its X-Nuvix-* spelling.
func header(r *http.Request, name string) string {
	if v := r.Header.Get("X-Appwrite-" + name); v != "" {
		return v
	}
	return r.Header.Get("X-Nuvix-" + name)
}

func (d *Daemon) cookieName() string { return "a_session_" + strings.ToLower(d.cfg.Project) }

// authenticate resolves the caller in Appwrite's order: project, API key,
// session cookie (then its _legacy twin), X-Appwrite-Session,
// X-Fallback-Cookies, and last X-Appwrite-JWT.
func (d *Daemon) authenticate(r *http.Request) (*caller, error) {
	cl := d.proxies.client(r)
	c := &caller{ip: cl.ip, limitIP: cl.limit, https: cl.https}
	projectHeader := header(r, "Project")
	project := r.URL.Query().Get("project")
	if project == "" {
		project = projectHeader
	}
	if project != "" && project != d.cfg.Project {
		return nil, errProjectNotFound
	}
	ctx := r.Context()
	if secret := header(r, "Key"); secret != "" {
		if projectHeader == "" {
			return nil, errProjectMissing
		}
		k, err := d.core.AuthenticateKey(ctx, secret)
		switch {
		case err == nil:
			c.key = &k
		case errors.Is(err, tokenstore.ErrKeyExpired):
			return nil, errKeyExpired
		case !errors.Is(err, tokenstore.ErrKeyInvalid):
			return nil, err
		} // an unknown key leaves a guest, refused later by scope
	}
	if cred := d.sessionCredential(r); cred != "" {
		u, s, err := d.core.Authenticate(ctx, cred)
		switch {
		case err == nil:
			c.user, c.session = &u, &s
		case !errors.Is(err, tokenstore.ErrSessionNotFound):
			return nil, err
		}
	}
	if jwt := header(r, "Jwt"); jwt != "" { // X-Appwrite-JWT, spelled canonically so Get copies nothing
		if c.user != nil {
			return nil, errJWTAndCookie
		}
		u, s, err := d.core.VerifyJWT(ctx, jwt)
		switch {
		case err == nil:
			c.user, c.session, c.viaJWT = &u, &s, true
		case errors.Is(err, tokenstore.ErrSessionNotFound):
			// the session is gone: the request is a guest's
		default:
			return nil, err
		}
	}
	return c, nil
}

// sessionCredential finds the session credential of a request.
func (d *Daemon) sessionCredential(r *http.Request) string {
	name := d.cookieName()
	for _, n := range []string{name, name + "_legacy"} {
		if ck, err := r.Cookie(n); err == nil && ck.Value != "" {
			if v, err := url.PathUnescape(ck.Value); err == nil {
				return v
			}
			return ck.Value
		}
	}
	if v := header(r, "Session"); v != "" {
		return v
	}
	if raw := r.Header.Get("X-Fallback-Cookies"); raw != "" {
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) == nil {
			if v, ok := m[name].(string); ok {
				return v
			}
		}
	}
	return ""
}

// requireScope refuses a caller without scope as Appwrite does.
func requireScope(c *caller, scope string) error {
	if c.user != nil && !c.user.Status && c.key == nil {
		return errUserBlocked
	}
	if c.has(scope) {
		return nil
	}
	who := "User"
	if c.key != nil {
		who = "API key"
	}
	return errorf(401, "general_unauthorized_scope", "%s (role: %s) missing scopes ([\"%s\"])", who, c.role(), scope)
}
