package daemon

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// createSession is account.createSession: it exchanges {userId, secret} for
// a session. Every refusal of the secret looks the same (401
// user_invalid_token). Limited to sessions.token per hour per IP and user,
// reset on success; API key callers are not limited.
func (d *Daemon) createSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.user != nil {
		return errSessionExists
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	userID, err := p.id("userId")
	if err != nil {
		return err
	}
	secret, err := p.text("secret", 256)
	if err != nil {
		return err
	}
	s, cred, err := d.exchange(w, r, c, userID, secret)
	if err != nil {
		return d.exchangeFailed(r, c, userID, err)
	}
	o := d.originOf(r, c)
	d.record(o, Event{Event: string(evTokenExchanged), UserID: userID, Provider: s.Provider, SessionID: s.ID})
	d.record(o, Event{Event: string(evSessionCreated), UserID: userID, Provider: s.Provider, SessionID: s.ID})
	d.setSessionCookies(w, r, c, cred, s.Expire)
	shown := ""
	if c.key != nil {
		shown = cred
	}
	writeJSON(w, http.StatusCreated, newSessionModel(s, true, shown, d.providerTokens(r.Context(), s)))
	return nil
}

// exchange runs the exchange under limits.session_token for a caller
// without an API key: Appwrite's abuse limit, counted on every request
// and reset by a success. A store that counts the limits (PostgreSQL)
// counts it in the exchange's own step, one transaction where a hit, the
// exchange and the reset would be three; the memory counter counts
// around it.
func (d *Daemon) exchange(w http.ResponseWriter, r *http.Request, c *caller, userID, secret string) (tokenstore.Session, string, error) {
	client := tokenstore.Client{IP: c.ip, UserAgent: d.userAgent(r, c)}
	if c.key != nil || !d.cfg.Limits.Enabled {
		return d.core.Exchange(r.Context(), userID, secret, client)
	}
	limit := d.cfg.Limits.SessionToken
	key := "session_token:" + c.limitIP + ":" + userID
	if d.limitsInStore() {
		s, cred, count, err := d.core.ExchangeLimited(r.Context(), userID, secret, client,
			tokenstore.RouteLimit{Key: key, Period: time.Hour, Max: limit})
		if count.Hits > 0 {
			if lerr := d.limitCounted(w, r, limit, count.Hits, count.Reset); lerr != nil {
				return s, cred, lerr
			}
		}
		return s, cred, err
	}
	if err := d.limit(w, r, key, limit, time.Hour); err != nil {
		return tokenstore.Session{}, "", err
	}
	s, cred, err := d.core.Exchange(r.Context(), userID, secret, client)
	if err == nil {
		if err := d.limits.reset(r.Context(), key); err != nil {
			d.logLimited(r.Context(), slog.LevelWarn, "rate limit reset failed", "err", err.Error())
		}
	}
	return s, cred, err
}

// exchangeFailed records a refused exchange, and the tokens it burned,
// and returns the answer: the same 401 for every reason tokenstore gives.
func (d *Daemon) exchangeFailed(r *http.Request, c *caller, userID string, err error) error {
	o := d.originOf(r, c)
	var xe *tokenstore.ExchangeError
	switch {
	case errors.As(err, &xe):
		d.record(o, Event{Event: string(evTokenExchangeFailed), UserID: userID, Reason: string(xe.Reason)})
		if xe.Burned > 0 {
			d.record(o, Event{Event: string(evTokenBurned), UserID: userID, Reason: "max_attempts", Count: xe.Burned})
		}
		return err
	case errors.Is(err, errRateLimit):
		d.record(o, Event{Event: string(evTokenExchangeFailed), UserID: userID, Reason: reasonRateLimited})
		return err
	}
	reason, ae := d.reason(r, err)
	d.record(o, Event{Event: string(evTokenExchangeFailed), UserID: userID, Reason: reason, cause: causeOf(err)})
	return ae
}

// userAgent honours X-Forwarded-User-Agent only for API key callers, as
// Appwrite does.
func (d *Daemon) userAgent(r *http.Request, c *caller) string {
	if c.key != nil {
		if ua := r.Header.Get("X-Forwarded-User-Agent"); ua != "" {
			return ua
		}
	}
	return r.UserAgent()
}

func (d *Daemon) getAccount(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, newUserModel(*c.user))
	return nil
}

func (d *Daemon) listSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	return d.writeSessions(w, r, c.user.ID, c.session.ID)
}

// sessionParam resolves a sessionId path value, where "current" is the
// caller's own session.
func sessionParam(r *http.Request, c *caller) string {
	if id := r.PathValue("sessionId"); id != "current" {
		return id
	}
	return c.session.ID
}

func (d *Daemon) getSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := sessionParam(r, c)
	s, err := d.core.SessionByID(r.Context(), c.user.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newSessionModel(s, s.ID == c.session.ID, "", d.providerTokens(r.Context(), s)))
	return nil
}

func (d *Daemon) deleteSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := d.limit(w, r, "delete_session:"+c.limitIP, 100, time.Hour); err != nil {
		return err
	}
	id := sessionParam(r, c)
	if err := d.core.DeleteSession(r.Context(), c.user.ID, id); err != nil {
		return err
	}
	d.record(d.originOf(r, c), Event{Event: string(evSessionDeleted), UserID: c.user.ID, SessionID: id})
	if id == c.session.ID {
		d.clearSessionCookies(w, r, c)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (d *Daemon) deleteSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := d.limit(w, r, "delete_sessions:"+c.limitIP, 100, time.Hour); err != nil {
		return err
	}
	n, err := d.core.DeleteSessions(r.Context(), c.user.ID)
	if err != nil {
		return err
	}
	d.recordSessionsDeleted(r, c, c.user.ID, n)
	d.clearSessionCookies(w, r, c)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// createJWT is account.createJWT: a JWT for the caller's session, signed
// with the daemon's Ed25519 key (see /.well-known/jwks.json).
func (d *Daemon) createJWT(w http.ResponseWriter, r *http.Request, c *caller) error {
	if c.viaJWT {
		return errJWTCreation
	}
	if c.session == nil {
		return errSessionNotFound
	}
	if err := d.limit(w, r, "jwt:"+c.user.ID, d.cfg.Limits.JWT, time.Minute); err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	secs, err := p.intRange("duration", int(tokenstore.DefaultJWTDuration/time.Second), 0, int(tokenstore.MaxJWTDuration/time.Second))
	if err != nil {
		return err
	}
	d0 := time.Duration(secs) * time.Second
	if secs == 0 {
		d0 = tokenstore.DefaultJWTDuration
	}
	jwt, err := d.core.IssueJWT(*c.session, d0)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, jwtModel{JWT: jwt})
	return nil
}

// setSessionCookies sets Appwrite's two session cookies and, for callers a
// browser would not give the cookies to (no Origin, or a cross-site one),
// X-Fallback-Cookies.
func (d *Daemon) setSessionCookies(w http.ResponseWriter, r *http.Request, c *caller, cred string, expire time.Time) {
	d.sessionCookies(w, r, c, cred, expire)
	if !d.sameSite(r) {
		w.Header().Set("X-Fallback-Cookies", d.fallbackCookies(cred))
	}
}

// fallbackCookies is X-Fallback-Cookies for a credential: the JSON object
// {"a_session_<project>": cred}. The cookie name needs no escaping (the
// project is an id), so only the credential goes through json.Marshal.
func (d *Daemon) fallbackCookies(cred string) string {
	value, _ := json.Marshal(cred)
	return `{"` + d.cookieName() + `":` + string(value) + `}`
}

// sessionCookies sets Appwrite's two session cookies, a_session_<project>
// and its _legacy twin, on public_url's domain.
func (d *Daemon) sessionCookies(w http.ResponseWriter, r *http.Request, c *caller, cred string, expire time.Time) {
	name := d.cookieName()
	value := url.QueryEscape(cred) // as Swoole's cookie(): = + / percent-encoded
	attrs := "; expires=" + expire.UTC().Format(http.TimeFormat) + "; path=/" + d.cookieDomain() + d.secureAttr(r, c) + "; httponly"
	h := w.Header()
	h.Add("Set-Cookie", name+"_legacy="+value+attrs)
	h.Add("Set-Cookie", name+"="+value+attrs+"; samesite=None")
}

// clearSessionCookies expires both session cookies (and the fallback).
func (d *Daemon) clearSessionCookies(w http.ResponseWriter, r *http.Request, c *caller) {
	name := d.cookieName()
	attrs := "=; expires=" + time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) + "; path=/" + d.cookieDomain() + d.secureAttr(r, c) + "; httponly"
	h := w.Header()
	h.Add("Set-Cookie", name+"_legacy"+attrs)
	h.Add("Set-Cookie", name+attrs+"; samesite=None")
	if !d.sameSite(r) {
		h.Set("X-Fallback-Cookies", "[]")
	}
}
