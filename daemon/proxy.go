package daemon

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/handoffd/handoff/config"
)

// proxies says who a request's client is, given the reverse proxies the
// daemon trusts (http.trusted_proxies). A peer outside them is the client,
// whatever headers it sends. A trusted peer's forwarding header is walked
// from the right, where the nearest proxy appended what it saw, to the
// first address that is not a trusted proxy: entries further left were
// written by the client and prove nothing. Only one header is read
// (http.client_ip_header), never whichever is present, since a proxy that
// appends to X-Forwarded-For passes a client-written Forwarded through
// untouched (and the other way round).
type proxies struct {
	trusted   []netip.Prefix
	forwarded bool // read RFC 7239 Forwarded, not X-Forwarded-For
	v6bits    int  // per-IP limits count IPv6 clients by this prefix
}

func newProxies(h config.HTTP) proxies {
	return proxies{trusted: h.TrustedPrefixes(), forwarded: h.ClientIPHeader == "forwarded", v6bits: h.IPv6Prefix}
}

// client is what a request says about its client.
type client struct {
	ip    string // the full address, as sessions record it and plugins see it
	limit string // what per-IP limits count: an IPv6 client's /ipv6_prefix
	https bool   // a trusted proxy says the client used https
}

// hop is one entry of a forwarding header. An entry that is not an IP
// address (garbage, "unknown", an RFC 7239 obfuscated id) has no addr.
type hop struct {
	addr  netip.Addr
	https bool
}

func (p proxies) isTrusted(a netip.Addr) bool {
	for _, pre := range p.trusted {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// client resolves r's client. A walk that meets an entry that is not an
// address stops there and keeps the trusted hop to its right: a junk entry
// never becomes the client, and only a trusted proxy can have written it.
func (p proxies) client(r *http.Request) client {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		return client{ip: host, limit: host}
	}
	cur := hop{addr: peer}
	if p.isTrusted(peer) {
		hops := p.hops(r)
		for i := len(hops) - 1; i >= 0 && hops[i].addr.IsValid(); i-- {
			cur = hops[i]
			if !p.isTrusted(cur.addr) {
				break
			}
		}
		if !p.forwarded {
			cur.https = firstProto(r.Header.Values("X-Forwarded-Proto")) == "https"
		}
	}
	ip := cur.addr.String()
	return client{ip: ip, limit: p.limitKey(cur.addr, ip), https: cur.https}
}

// limitKey is what per-IP limits count a client by: an IPv4 address, or
// an IPv6 address's leading ipv6_prefix bits ("2001:db8:1:2::/64"), since
// one host owns a whole /64 and would otherwise get 2^64 allowances. ip is
// a's text.
func (p proxies) limitKey(a netip.Addr, ip string) string {
	if a.Is4() || p.v6bits >= 128 {
		return ip
	}
	return netip.PrefixFrom(a, p.v6bits).Masked().String()
}

// hops reads the configured forwarding header, every line of it, left to
// right.
func (p proxies) hops(r *http.Request) []hop {
	var out []hop
	if p.forwarded {
		for _, el := range forwardedElements(r.Header.Values("Forwarded")) {
			h := hop{https: strings.EqualFold(el.proto, "https")}
			if el.ok {
				h.addr, _ = parseAddr(el.forIP)
			}
			out = append(out, h)
		}
		return out
	}
	for _, line := range r.Header.Values("X-Forwarded-For") {
		for _, entry := range strings.Split(line, ",") {
			a, _ := parseAddr(entry)
			out = append(out, hop{addr: a})
		}
	}
	return out
}

// firstProto is the leftmost X-Forwarded-Proto value: what the outermost
// proxy saw. (A client could only make its own cookie Secure by writing
// one, which harms nobody else.)
func firstProto(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	first, _, _ := strings.Cut(lines[0], ",")
	return strings.ToLower(strings.TrimSpace(first))
}

// parseAddr reads an address as forwarding headers and RemoteAddr write
// it: "192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]" or
// "[2001:db8::1]:80". IPv4-mapped IPv6 is unmapped. A zone, or anything
// else, is not an address.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, perr := netip.ParseAddrPort(s); perr == nil {
			a, err = ap.Addr(), nil
		} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
			a, err = netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		}
	}
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// forwardedElement is one hop of an RFC 7239 Forwarded header. ok is false
// when the element does not parse or has no (or two) for= parameters.
type forwardedElement struct {
	forIP, proto string
	ok           bool
}

// forwardedElements splits Forwarded header lines into their elements,
// honouring quoted strings (for="[2001:db8::1]:4711").
func forwardedElements(lines []string) []forwardedElement {
	var out []forwardedElement
	for _, line := range lines {
		for _, raw := range splitQuoted(line, ',') {
			out = append(out, parseForwardedElement(raw))
		}
	}
	return out
}

func parseForwardedElement(raw string) forwardedElement {
	var el forwardedElement
	fors := 0
	for _, pair := range splitQuoted(raw, ';') {
		name, value, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found {
			return forwardedElement{}
		}
		value, ok := unquote(value)
		if !ok {
			return forwardedElement{}
		}
		switch strings.ToLower(name) {
		case "for":
			el.forIP, fors = value, fors+1
		case "proto":
			el.proto = value
		}
	}
	el.ok = fors == 1
	return el
}

// splitQuoted splits s at sep outside double-quoted strings.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote reads a token or an RFC 7230 quoted-string.
func unquote(v string) (string, bool) {
	if !strings.HasPrefix(v, `"`) {
		return v, !strings.Contains(v, `"`)
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return "", false
	}
	var b strings.Builder
	inner := v[1 : len(v)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' {
			if i++; i == len(inner) {
				return "", false
			}
			c = inner[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
