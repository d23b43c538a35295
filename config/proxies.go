package config

import (
	"net/netip"
	"strings"
)

// privateRanges are what the deprecated http.trust_proxy: true trusts:
// loopback and the private ranges (RFC 1918, RFC 4193).
var privateRanges = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// TrustedPrefixes returns http.trusted_proxies parsed, plus loopback and
// the private ranges when the deprecated http.trust_proxy is true. Entries
// that do not parse are left out: Validate reports them.
func (h HTTP) TrustedPrefixes() []netip.Prefix {
	list := h.TrustedProxies
	if h.TrustProxy {
		list = append(append([]string{}, list...), privateRanges...)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads a CIDR, or a single address as its own /32 or /128.
// IPv4-mapped IPv6 prefixes are unmapped, as client addresses are.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
