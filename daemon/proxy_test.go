package daemon

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/handoffd/handoff/config"
)

// TestClientIP walks forwarding headers as a client behind (or in front
// of) the proxies would write them. Trusted: 10.0.0.0/8 and 2001:db8:f::/48.
func TestClientIP(t *testing.T) {
	xff := func(lines ...string) map[string][]string { return map[string][]string{"X-Forwarded-For": lines} }
	fwd := func(lines ...string) map[string][]string { return map[string][]string{"Forwarded": lines} }
	for _, tc := range []struct {
		name      string
		forwarded bool // client_ip_header: forwarded
		peer      string
		headers   map[string][]string
		ip, limit string
		https     bool
	}{
		{name: "no proxy", peer: "203.0.113.9:5000", ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "untrusted peer's XFF and proto are ignored", peer: "203.0.113.9:5000",
			headers: map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}}, ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "untrusted peer's Forwarded is ignored", forwarded: true, peer: "203.0.113.9:5000",
			headers: fwd("for=1.2.3.4;proto=https"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "client-written leftmost entry is skipped", peer: "10.0.0.1:80", headers: xff("1.2.3.4, 203.0.113.9"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "chain of trusted proxies", peer: "10.0.0.1:80", headers: xff("1.2.3.4, 203.0.113.9, 10.0.0.7, 10.9.9.9"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "every header line, in order", peer: "10.0.0.1:80", headers: xff("1.2.3.4", "203.0.113.9, 10.0.0.7"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "client in a trusted range, all trusted", peer: "10.0.0.1:80", headers: xff("10.0.0.3, 10.0.0.2"), ip: "10.0.0.3", limit: "10.0.0.3"},
		{name: "trusted peer without header", peer: "10.0.0.1:80", ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "junk next to the proxy stops at the proxy", peer: "10.0.0.1:80", headers: xff("1.2.3.4, <script>"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "junk behind a trusted hop keeps that hop", peer: "10.0.0.1:80", headers: xff("1.2.3.4, unknown, 10.0.0.8"), ip: "10.0.0.8", limit: "10.0.0.8"},
		{name: "junk written by the client never counts", peer: "10.0.0.1:80", headers: xff("garbage, 203.0.113.9"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "empty entry is junk", peer: "10.0.0.1:80", headers: xff("1.2.3.4,,"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "zone is junk", peer: "10.0.0.1:80", headers: xff("1.2.3.4, fe80::1%eth0"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "entries with ports", peer: "10.0.0.1:80", headers: xff("1.2.3.4, 203.0.113.9:4711"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "IPv6 entry with port", peer: "10.0.0.1:80", headers: xff("[2001:db8:1:2::77]:4711"), ip: "2001:db8:1:2::77", limit: "2001:db8:1:2::/64"},
		{name: "IPv6 trusted proxy", peer: "[2001:db8:f::1]:80", headers: xff("1.2.3.4, 2001:db8:1:2::77, 2001:db8:f:9::2"), ip: "2001:db8:1:2::77", limit: "2001:db8:1:2::/64"},
		{name: "IPv4-mapped peer is unmapped", peer: "[::ffff:10.0.0.1]:80", headers: xff("203.0.113.9"), ip: "203.0.113.9", limit: "203.0.113.9"},
		{name: "IPv6 peer counted by /64", peer: "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:80", ip: "2001:db8:1:2:aaaa:bbbb:cccc:dddd", limit: "2001:db8:1:2::/64"},
		{name: "trusted peer's proto", peer: "10.0.0.1:80", headers: map[string][]string{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"HTTPS, http"}},
			ip: "203.0.113.9", limit: "203.0.113.9", https: true},
		{name: "XFF is not read in forwarded mode", forwarded: true, peer: "10.0.0.1:80",
			headers: map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}}, ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded is not read in XFF mode", peer: "10.0.0.1:80", headers: fwd("for=1.2.3.4"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: RFC 7239 example", forwarded: true, peer: "10.0.0.1:80",
			headers: fwd("for=1.2.3.4, for=192.0.2.60;proto=https;by=203.0.113.43"), ip: "192.0.2.60", limit: "192.0.2.60", https: true},
		{name: "Forwarded: quoted IPv6 with port", forwarded: true, peer: "10.0.0.1:80",
			headers: fwd(`for=1.2.3.4, For="[2001:db8:cafe::17]:4711";proto=http`), ip: "2001:db8:cafe::17", limit: "2001:db8:cafe::/64"},
		{name: "Forwarded: quoted IPv4 with port, every line", forwarded: true, peer: "10.0.0.1:80",
			headers: fwd("for=1.2.3.4", `for="198.51.100.17:5555";proto=https`, "for=10.0.0.5"), ip: "198.51.100.17", limit: "198.51.100.17", https: true},
		{name: "Forwarded: unknown stops at the proxy", forwarded: true, peer: "10.0.0.1:80", headers: fwd("for=1.2.3.4, for=unknown"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: obfuscated id stops at the last trusted hop", forwarded: true, peer: "10.0.0.1:80",
			headers: fwd("for=1.2.3.4, for=_hidden, for=10.0.0.6;proto=https"), ip: "10.0.0.6", limit: "10.0.0.6", https: true},
		{name: "Forwarded: comma inside quotes is one junk element", forwarded: true, peer: "10.0.0.1:80",
			headers: fwd(`for=1.2.3.4, for="5.6.7.8, 9.9.9.9"`), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: element without for", forwarded: true, peer: "10.0.0.1:80", headers: fwd("for=1.2.3.4, proto=https"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: two for in one element", forwarded: true, peer: "10.0.0.1:80", headers: fwd("for=203.0.113.9;for=1.2.3.4"), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: unterminated quote", forwarded: true, peer: "10.0.0.1:80", headers: fwd(`for="203.0.113.9`), ip: "10.0.0.1", limit: "10.0.0.1"},
		{name: "Forwarded: escaped quote", forwarded: true, peer: "10.0.0.1:80", headers: fwd(`for="1.2.3.4\"", for=203.0.113.9`), ip: "203.0.113.9", limit: "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := config.Default().HTTP
			h.TrustedProxies = []string{"10.0.0.0/8", "2001:db8:f::/48"}
			if tc.forwarded {
				h.ClientIPHeader = "forwarded"
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for k, vs := range tc.headers {
				r.Header[k] = vs
			}
			got := newProxies(h).client(r)
			if got.ip != tc.ip || got.limit != tc.limit || got.https != tc.https {
				t.Fatalf("client = %+v, want ip %s limit %s https %v", got, tc.ip, tc.limit, tc.https)
			}
		})
	}
}

// TestClientIPTrustProxy: the deprecated trust_proxy: true trusts loopback
// and the private ranges, and no longer takes the leftmost entry; the
// daemon says once at start that it is deprecated.
func TestClientIPTrustProxy(t *testing.T) {
	var logs lockedBuffer
	newTestServer(t, withLogs(&logs), func(c *config.Config) { c.HTTP.TrustProxy = true })
	if n := strings.Count(logs.String(), "http.trust_proxy is deprecated"); n != 1 {
		t.Fatalf("%d deprecation lines in\n%s", n, logs.String())
	}
	h := config.Default().HTTP
	h.TrustProxy = true
	for peer, want := range map[string]string{
		"127.0.0.1:1": "203.0.113.9", "[::1]:1": "203.0.113.9", "192.168.1.1:1": "203.0.113.9",
		"172.31.0.1:1": "203.0.113.9", "[fd00::1]:1": "203.0.113.9", "198.51.100.1:1": "198.51.100.1",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", "1.2.3.4, 203.0.113.9")
		if got := newProxies(h).client(r); got.ip != want {
			t.Errorf("peer %s: client %s, want %s", peer, got.ip, want)
		}
	}
}

// TestExchangeLimitBehindProxy is the attack on per-IP limits: a client
// behind a trusted proxy (here the test's loopback peer, whose XFF ends
// with the client's real address 203.0.113.9) writes a new leftmost
// X-Forwarded-For entry on each try. The 11th try is a 429 whatever it
// writes. Today's main took the leftmost entry with trust_proxy: true.
func TestExchangeLimitBehindProxy(t *testing.T) {
	for name, change := range map[string]func(*config.Config){
		"trusted_proxies": func(c *config.Config) { c.HTTP.TrustedProxies = []string{"127.0.0.1/32"} },
		"trust_proxy":     func(c *config.Config) { c.HTTP.TrustProxy = true },
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestServer(t, change)
			s.createUser("u1", "u1@example.com")
			s.createUser("u2", "u2@example.com")
			secret := s.mint("u2", nil)
			try := func(xff string) resp {
				return s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": xff},
					body: map[string]any{"userId": "u1", "secret": "000000"}})
			}
			for i := 1; i <= 10; i++ {
				wantError(t, try(fmt.Sprintf("198.51.100.%d, 203.0.113.9", i)), 401, "user_invalid_token")
			}
			for _, spoof := range []string{"1.2.3.4, 203.0.113.9", "garbage, 203.0.113.9", "203.0.113.10, 203.0.113.9"} {
				wantError(t, try(spoof), 429, "general_rate_limit_exceeded")
			}
			// Another client behind the same proxy has its own allowance,
			// and its session records its own address.
			r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.77"},
				body: map[string]any{"userId": "u2", "secret": secret}})
			if r.status != 201 || r.json(t)["ip"] != "203.0.113.77" {
				t.Fatalf("other client: %d %s", r.status, r.body)
			}
		})
	}
}

// TestUntrustedPeerHeaders: a peer that is no trusted proxy cannot pick its
// address by X-Forwarded-For nor its cookie's Secure by X-Forwarded-Proto.
func TestUntrustedPeerHeaders(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/8"} })
	s.createUser("u1", "u1@example.com")
	for i := 1; i <= 10; i++ {
		r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i)},
			body: map[string]any{"userId": "u1", "secret": "000000"}})
		wantError(t, r, 401, "user_invalid_token")
	}
	wantError(t, s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": "198.51.100.99"},
		body: map[string]any{"userId": "u1", "secret": "000000"}}), 429, "general_rate_limit_exceeded")

	s.createUser("u2", "u2@example.com")
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"},
		body: map[string]any{"userId": "u2", "secret": s.mint("u2", nil)}})
	if r.status != 201 || r.json(t)["ip"] != "127.0.0.1" {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.Contains(strings.ToLower(c), "secure") {
			t.Fatalf("an untrusted peer's X-Forwarded-Proto made a Secure cookie: %q", c)
		}
	}
}

// TestForwardedBehindProxy: with client_ip_header forwarded, the client
// is the rightmost for= that is no trusted proxy, its proto= makes the
// cookie Secure, and a client-written X-Forwarded-For counts for nothing.
func TestForwardedBehindProxy(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) {
		c.HTTP.TrustedProxies = []string{"127.0.0.1"}
		c.HTTP.ClientIPHeader = "forwarded"
	})
	s.createUser("u1", "u1@example.com")
	for i := 1; i <= 11; i++ {
		r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{
			"Forwarded":       fmt.Sprintf(`for=198.51.100.%d, for="[2001:db8:1:2::%x]:4711";proto=https`, i, i),
			"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i),
		}, body: map[string]any{"userId": "u1", "secret": "000000"}})
		if i <= 10 {
			wantError(t, r, 401, "user_invalid_token")
		} else {
			wantError(t, r, 429, "general_rate_limit_exceeded")
		}
	}
	s.createUser("u2", "u2@example.com")
	r := s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"Forwarded": `for=1.2.3.4;proto=http, for="[2001:db8:9::5]:1";proto=https`},
		body: map[string]any{"userId": "u2", "secret": s.mint("u2", nil)}})
	if r.status != 201 || r.json(t)["ip"] != "2001:db8:9::5" {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if !strings.Contains(c, "; secure") {
			t.Fatalf("proto=https from a trusted proxy, cookie not Secure: %q", c)
		}
	}
}

// TestIPv6PrefixLimit: IPv6 clients in one /64 (one host can use them
// all) share a per-IP limit, while the session records the full address;
// another /64 has its own allowance; ipv6_prefix 128 counts each address.
func TestIPv6PrefixLimit(t *testing.T) {
	try := func(s *testServer, ip, userID, secret string) resp {
		s.t.Helper()
		return s.do(req{method: "POST", path: "/v1/account/sessions/token", headers: map[string]string{"X-Forwarded-For": ip},
			body: map[string]any{"userId": userID, "secret": secret}})
	}
	proxied := func(c *config.Config) { c.HTTP.TrustedProxies = []string{"127.0.0.1"} }
	s := newTestServer(t, proxied)
	s.createUser("u1", "u1@example.com")
	for i := 1; i <= 10; i++ {
		wantError(t, try(s, fmt.Sprintf("2001:db8:1:2:%x::%x", i, i), "u1", "000000"), 401, "user_invalid_token")
	}
	wantError(t, try(s, "2001:db8:1:2:ffff:ffff:ffff:fffe", "u1", "000000"), 429, "general_rate_limit_exceeded")
	s.createUser("u2", "u2@example.com")
	r := try(s, "2001:db8:1:3::1", "u2", s.mint("u2", nil))
	if r.status != 201 || r.json(t)["ip"] != "2001:db8:1:3::1" {
		t.Fatalf("another /64: %d %s", r.status, r.body)
	}

	s = newTestServer(t, proxied, func(c *config.Config) { c.HTTP.IPv6Prefix = 128 })
	s.createUser("u1", "u1@example.com")
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2"} {
		if r := try(s, ip, "u1", "000000"); r.status != 401 || r.header.Get("X-RateLimit-Remaining") != "9" {
			t.Fatalf("ipv6_prefix 128, %s: %d remaining %s", ip, r.status, r.header.Get("X-RateLimit-Remaining"))
		}
	}
}

// FuzzClientIP feeds arbitrary forwarding headers from a trusted and an
// untrusted peer. The client is always an IP address; an untrusted peer is
// always itself; nothing panics.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []string{
		"1.2.3.4, 203.0.113.9", "garbage", "", ",,,", "[::1]:80, 10.0.0.1", "fe80::1%eth0",
		`for="[2001:db8::1]:4711";proto=https, for=10.0.0.2`, `for="\"`, `for=unknown, for=_x`, "for=1.2.3.4;for=5.6.7.8",
	} {
		f.Add(seed, seed)
	}
	f.Fuzz(func(t *testing.T, xff, forwarded string) {
		for _, mode := range []string{"x-forwarded-for", "forwarded"} {
			h := config.Default().HTTP
			h.TrustedProxies, h.ClientIPHeader = []string{"10.0.0.0/8", "::1"}, mode
			p := newProxies(h)
			for peer, trusted := range map[string]bool{"10.0.0.1:80": true, "[::1]:80": true, "203.0.113.1:80": false} {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = peer
				r.Header["X-Forwarded-For"] = []string{xff}
				r.Header["Forwarded"] = []string{forwarded}
				r.Header.Set("X-Forwarded-Proto", xff)
				got := p.client(r)
				a, err := netip.ParseAddr(got.ip)
				if err != nil || a.Zone() != "" {
					t.Fatalf("client %q is not an address", got.ip)
				}
				if !trusted && (got.ip != "203.0.113.1" || got.https) {
					t.Fatalf("untrusted peer became %+v", got)
				}
			}
		}
	})
}
