package daemon

import (
	"net/http"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

func (d *Daemon) createUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	id, err := p.id("userId")
	if err != nil {
		return err
	}
	nu := tokenstore.NewUser{ID: id}
	if nu.Email, _, err = p.str("email"); err != nil {
		return err
	}
	if nu.Email != "" && (!validEmail(nu.Email) || !tokenstore.ValidText(nu.Email)) {
		return invalidParam("email", "Value must be a valid email address")
	}
	if nu.Phone, _, err = p.str("phone"); err != nil {
		return err
	}
	if nu.Phone != "" && !validPhone(nu.Phone) {
		return invalidParam("phone", "Phone number must start with a '+' can have a maximum of fifteen digits.")
	}
	if nu.Name, _, err = p.str("name"); err != nil {
		return err
	}
	if !tokenstore.ValidName(nu.Name) {
		return invalidParam("name", "Value must be a valid string and no longer than 128 chars")
	}
	if pw, ok, _ := p.str("password"); ok && pw != "" {
		// handoff keeps no passwords in the core: they belong to a
		// password provider, which hashes them with argon2id.
		return invalidParam("password", "handoff does not store passwords on users; enroll one through a password provider: POST /v1/users/{userId}/providers/{name}")
	}
	u, err := d.core.CreateUser(r.Context(), nu)
	if err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evUserCreated), UserID: u.ID})
	writeJSON(w, http.StatusCreated, newUserModel(u))
	return nil
}

func (d *Daemon) listUsers(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	raw, err := p.list("queries")
	if err != nil {
		return err
	}
	search, _, err := p.str("search")
	if err != nil {
		return err
	}
	if len(search) > 256 {
		return invalidParam("search", "Value must be a valid string and no longer than 256 chars")
	}
	total, err := p.boolean("total", true)
	if err != nil {
		return err
	}
	q, err := parseUserQueries(raw, search)
	if err != nil {
		return err
	}
	q.NoTotal = !total
	users, n, err := d.core.ListUsers(r.Context(), q)
	if err != nil {
		return err
	}
	out := userList{Total: n, Users: make([]userModel, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, newUserModel(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pathID returns a path segment that must be a valid id.
func pathID(r *http.Request, name string) (string, error) {
	id := r.PathValue(name)
	if !tokenstore.ValidID(id) {
		return "", invalidParam(name, "UID must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, and underscore. Can't start with a leading underscore")
	}
	return id, nil
}

func (d *Daemon) getUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	u, err := d.core.GetUser(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newUserModel(u))
	return nil
}

func (d *Daemon) deleteUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	if err := d.core.DeleteUser(r.Context(), id); err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evUserDeleted), UserID: id})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// createToken is users.createToken: params are checked before the user is
// looked up, as Appwrite does.
func (d *Daemon) createToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	length, err := p.intRange("length", d.cfg.Tokens.Length, tokenstore.MinTokenLength, tokenstore.MaxTokenLength)
	if err != nil {
		return err
	}
	expire, err := p.intRange("expire", int(d.cfg.Tokens.Expire/time.Second), int(tokenstore.MinTokenExpire/time.Second), int(tokenstore.MaxTokenExpire/time.Second))
	if err != nil {
		return err
	}
	t, secret, err := d.core.Mint(r.Context(), tokenstore.MintRequest{
		UserID: id, Length: length, Expire: time.Duration(expire) * time.Second,
		IP: c.ip, UserAgent: r.UserAgent(),
	})
	if err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evTokenMinted), UserID: id})
	writeJSON(w, http.StatusCreated, newTokenModel(t, secret))
	return nil
}

// createUserSession is users.createSession: a session made by the server
// with no token step; the credential is in the answer's secret.
func (d *Daemon) createUserSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	s, cred, err := d.core.CreateSession(r.Context(), id, "server", tokenstore.Client{IP: c.ip, UserAgent: r.UserAgent()})
	if err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evSessionCreated), UserID: id, Provider: s.Provider, SessionID: s.ID})
	writeJSON(w, http.StatusCreated, newSessionModel(s, false, cred, d.providerTokens(r.Context(), s)))
	return nil
}

func (d *Daemon) listUserSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	if _, err := d.core.GetUser(r.Context(), id); err != nil {
		return err
	}
	return d.writeSessions(w, r, id, "")
}

func (d *Daemon) deleteUserSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	if _, err := d.core.GetUser(r.Context(), id); err != nil {
		return err
	}
	n, err := d.core.DeleteSessions(r.Context(), id)
	if err != nil {
		return err
	}
	d.recordSessionsDeleted(r, c, id, n)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (d *Daemon) deleteUserSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	if _, err := d.core.GetUser(r.Context(), id); err != nil {
		return err
	}
	if err := d.core.DeleteSession(r.Context(), id, r.PathValue("sessionId")); err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evSessionDeleted), UserID: id, SessionID: r.PathValue("sessionId")})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// recordSessionsDeleted records the deletion of a user's n sessions at
// once; none deleted is no event.
func (d *Daemon) recordSessionsDeleted(r *http.Request, c *caller, userID string, n int) {
	if n > 0 {
		d.record(d.originOf(r, c), Event{Event: string(evSessionDeleted), UserID: userID, Count: n})
	}
}

// writeSessions answers with the user's sessions; current marks one.
func (d *Daemon) writeSessions(w http.ResponseWriter, r *http.Request, userID, current string) error {
	ss, err := d.core.ListSessions(r.Context(), userID)
	if err != nil {
		return err
	}
	out := sessionList{Total: len(ss), Sessions: make([]sessionModel, 0, len(ss))}
	for _, s := range ss {
		out.Sessions = append(out.Sessions, newSessionModel(s, s.ID == current, "", d.providerTokens(r.Context(), s)))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// validEmail is a plain check: one @, something on each side, a dot in the
// domain, no spaces.
func validEmail(s string) bool {
	if len(s) > 254 {
		return false
	}
	at := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '@':
			if at >= 0 {
				return false
			}
			at = i
		case c <= ' ' || c == '<' || c == '>' || c == '"' || c == ',':
			return false
		}
	}
	if at < 1 || at == len(s)-1 {
		return false
	}
	dom := s[at+1:]
	for i := 1; i < len(dom)-1; i++ {
		if dom[i] == '.' {
			return true
		}
	}
	return false
}

// validPhone is E.164: a + and up to 15 digits.
func validPhone(s string) bool {
	if len(s) < 2 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
