package daemon

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/handoffd/handoff/providers/sdk"
)

// errUnknownOrigin refuses a state-changing request from a page of an
// origin that is neither the API's own nor listed in cors.origins (a login
// CSRF: a cross-site form that signs the victim's browser in to the
// attacker's account). Appwrite's type for an origin it does not know.
var errUnknownOrigin = &apiError{403, "general_unknown_origin", "The request originated from an unknown origin. If you trust this origin, list it in cors.origins."}

// baseURL is the daemon's own URL, with no trailing slash: public_url, or
// http:// and the address it listens on. Never the request's Host: the
// client writes that, so it must not pick cookie attributes or the URL an
// IdP sends a browser back to.
func (d *Daemon) baseURL() string {
	if d.cfg.PublicURL != "" {
		return strings.TrimSuffix(d.cfg.PublicURL, "/")
	}
	if a := d.listenAddr.Load(); a != nil {
		return "http://" + *a
	}
	return "http://" + d.cfg.Listen
}

// publicHost is baseURL's host, without a port, lower-cased.
func (d *Daemon) publicHost() string {
	u, err := url.Parse(d.baseURL())
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// listenHostPort is what baseURL names when public_url is unset: the
// configured listen host (a name such as localhost stays a name, which the
// browser's cookies are bound to) with the port actually bound (":0" picks
// one), or the bound address when the configured host is empty.
func listenHostPort(listen string, bound net.Addr) string {
	host, _, err := net.SplitHostPort(listen)
	bhost, bport, berr := net.SplitHostPort(bound.String())
	if berr != nil {
		return listen
	}
	if err != nil || host == "" {
		host = bhost
	}
	return net.JoinHostPort(host, bport)
}

// checkPublicURL refuses to serve on a non-loopback listener without
// public_url when a running provider offers the redirect flow: its
// callback URL would name a wildcard or inward address. Config validation
// guesses from deliver.via and kind; only the plugin knows its flows.
func (d *Daemon) checkPublicURL(addr net.Addr) error {
	return d.checkPublicURLFor(addr, d.providerSet())
}

// checkPublicURLFor is checkPublicURL for the providers of set (a
// reload's, before it serves).
func (d *Daemon) checkPublicURLFor(addr net.Addr, set *providerSet) error {
	if d.cfg.PublicURL != "" || addr == nil {
		return nil
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	for _, pc := range set.list {
		p := set.byName[pc.Name]
		if p != nil && p.plugin != nil && slices.Contains(p.plugin.Info().Flows, sdk.FlowRedirect) && p.channel(browserSignIn) != channelNone {
			return fmt.Errorf("provider %s offers the redirect flow, so public_url must be set: the daemon listens on %s, not on loopback, and the IdP's callback URL cannot be derived from that (nor from the request's Host, which the client writes)", pc.Name, addr)
		}
	}
	return nil
}

// checkOrigin refuses a state-changing request whose Origin is neither the
// API's own nor one of cors.origins. A request without Origin (server SDKs,
// curl, a same-origin GET) passes; "Origin: null" (sandboxed frames,
// redirected form posts) does not. The OAuth2 callback is exempt: an IdP's
// form_post comes from the IdP's origin, and the flow's state and binding
// cookie guard it.
func (d *Daemon) checkOrigin(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	origin := r.Header.Values("Origin")
	if len(origin) == 0 || isCallback(r) {
		return nil
	}
	if len(origin) == 1 && (slices.Contains(d.cfg.CORS.Origins, origin[0]) || d.ownOrigin(r, origin[0])) {
		return nil
	}
	return errUnknownOrigin
}

// ownOrigin reports whether origin is the API's own: public_url's origin,
// or, without public_url, any http(s) origin on the request's Host. The
// Host is the client's to write, but a browser sends the one it connected
// to, so a page can only name its own origin this way.
func (d *Daemon) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" {
		return false
	}
	if d.cfg.PublicURL == "" {
		return strings.EqualFold(u.Host, r.Host)
	}
	own, err := url.Parse(d.cfg.PublicURL)
	return err == nil && u.Scheme == own.Scheme && strings.EqualFold(withPort(u), withPort(own))
}

// withPort is u's host:port with the scheme's default port filled in.
func withPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dnsName is a host name a cookie Domain may carry: letters, digits and
// hyphens in dot-separated labels, nothing that could end the attribute.
var dnsName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

// cookieDomain is "; domain=.<public host>" except for localhost and IP
// hosts, which get host-only cookies.
func (d *Daemon) cookieDomain() string {
	host := d.publicHost()
	if host == "localhost" || net.ParseIP(host) != nil || !dnsName.MatchString(host) {
		return ""
	}
	return "; domain=." + host
}

// secureAttr is "; secure" when the client reaches the daemon over https:
// public_url says so, the connection is TLS, or a trusted proxy says so.
func (d *Daemon) secureAttr(r *http.Request, c *caller) string {
	if strings.HasPrefix(d.baseURL(), "https://") || r.TLS != nil || c.https {
		return "; secure"
	}
	return ""
}

// sameSite reports whether the request's Origin (or Referer) shares the
// API host's registrable domain, approximated as its last two labels (the
// whole host for IPs and localhost). The API host is public_url's (or the
// listen address's), not the request's Host. No Origin at all is not
// same-site.
func (d *Daemon) sameSite(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return registrable(strings.ToLower(u.Hostname())) == registrable(d.publicHost())
}

func registrable(host string) string {
	if net.ParseIP(host) != nil {
		return host
	}
	labels := strings.Split(strings.ToLower(host), ".")
	if len(labels) <= 2 {
		return strings.Join(labels, ".")
	}
	return strings.Join(labels[len(labels)-2:], ".")
}
