package sdk

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// Helpers for text a plugin takes from an upstream service (an IdP's
// error, a network failure) and puts in an error or a log line. Errors
// cross to the host as protobuf strings, which must be valid UTF-8, so
// each of these returns valid UTF-8 whatever it is given.

// Truncate cuts s to at most n bytes, on a rune boundary, marking a cut
// with "…".
func Truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// NetReason says why an outbound request failed without its URL, which
// may carry a secret in its query: "timed out", or the cause, cut to 200
// bytes.
func NetReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return Truncate(err.Error(), 200)
}

// Printable keeps an upstream-supplied text printable (no control
// characters) and short (100 bytes) before it reaches an answer or a log.
func Printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	return Truncate(s, 100)
}
