package daemon

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// beginOAuth2Session starts Appwrite's createOAuth2Session: the same flow
// as beginOAuth2, whose callback opens the session itself, sets it in the
// session cookies on the API's domain and redirects to the success URL
// with nothing added to it.
func (d *Daemon) beginOAuth2Session(w http.ResponseWriter, r *http.Request, c *caller) error {
	return d.beginRedirect(w, r, c, browserSession)
}

// idpTokens are the IdP's tokens a redirect sign-in reported.
func idpTokens(id sdk.Identity) tokenstore.ProviderTokens {
	return tokenstore.ProviderTokens{AccessToken: id.AccessToken, AccessTokenExpiry: id.AccessTokenExpiry, RefreshToken: id.RefreshToken}
}

// openBrowserSession is the callback of createOAuth2Session: it opens the
// user's session and sets it in the session cookies of the answer, as
// Appwrite's redirect handler does (app/controllers/api/account.php at
// 0cefd06, L2029-2099: the else branch of "if ($state['token'])"). A
// session the browser already had is replaced: Appwrite deletes it
// ("Delete current session of new one", L1682-1690). Unlike Appwrite, the answer carries no X-Fallback-Cookies: it is
// a navigation, whose headers no script reads, so the header would only
// copy the credential into proxies' logs.
func (d *Daemon) openBrowserSession(w http.ResponseWriter, r *http.Request, c *caller, p *provider, user tokenstore.User, id sdk.Identity) error {
	s, cred, err := d.core.CreateProviderSession(r.Context(), user.ID, p.cfg.Name, id.Subject, idpTokens(id), tokenstore.Client{IP: c.ip, UserAgent: r.UserAgent()})
	if err != nil {
		return err
	}
	o := d.originOf(r, c)
	d.record(o, Event{Event: string(evSessionCreated), Provider: p.cfg.Name, UserID: user.ID, SessionID: s.ID})
	if old := c.session; old != nil && !c.viaJWT {
		err := d.core.DeleteSession(r.Context(), old.UserID, old.ID)
		switch {
		case err == nil:
			d.record(o, Event{Event: string(evSessionDeleted), UserID: old.UserID, SessionID: old.ID})
		case !errors.Is(err, tokenstore.ErrSessionNotFound):
			d.logLimited(r.Context(), slog.LevelWarn, "the browser's previous session was not deleted", "err", err.Error())
		}
	}
	d.sessionCookies(w, r, c, cred, s.Expire)
	return nil
}

// updateSession is Appwrite's account.updateSession: it refreshes the
// IdP's access token of the caller's session through the provider that
// opened it, when the session has a refresh token and the provider's
// plugin can refresh (sdk.Refresher), and answers the session. Other
// sessions are answered as they are, as Appwrite answers sessions of
// providers without OAuth2. Every session's expiry is pushed out by the
// session duration from now, as Appwrite does; the browser's cookies keep
// the expiry they were set with.
func (d *Daemon) updateSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := d.limit(w, r, "update_session:"+c.user.ID, 10, time.Hour); err != nil {
		return err
	}
	s, err := d.core.SessionByID(r.Context(), c.user.ID, sessionParam(r, c))
	if err != nil {
		return err
	}
	pt := d.providerTokens(r.Context(), s)
	var refreshed *tokenstore.ProviderTokens
	p := d.providerSet().byName[s.Provider]
	if pt.RefreshToken != "" && p != nil && slices.Contains(p.plugin.Info().Capabilities, sdk.CapRefresher) {
		start := time.Now()
		res, err := p.plugin.Refresh(r.Context(), sdk.RefreshRequest{RefreshToken: pt.RefreshToken})
		d.metrics.call(p.cfg.Name, "refresh", start, err)
		if err != nil {
			return err
		}
		pt = tokenstore.ProviderTokens{AccessToken: res.AccessToken, AccessTokenExpiry: res.AccessTokenExpiry, RefreshToken: cmp.Or(res.RefreshToken, pt.RefreshToken)}
		refreshed = &pt
	}
	if s, err = d.core.UpdateSession(r.Context(), c.user.ID, s.ID, refreshed); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newSessionModel(s, s.ID == c.session.ID, "", pt))
	return nil
}
