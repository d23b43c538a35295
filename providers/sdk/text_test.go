package sdk

import (
	"errors"
	"net/url"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"ééé", 3, "é…"}, // never half a rune
		{"a\xffb", 10, "a\uFFFDb"},
	} {
		got := Truncate(c.in, c.n)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestNetReasonHidesTheURL(t *testing.T) {
	err := &url.Error{Op: "Post", URL: "https://idp.example/token?client_secret=s3cret", Err: errors.New("connection refused")}
	if got := NetReason(err); got != "connection refused" {
		t.Fatalf("NetReason = %q", got)
	}
}

func TestPrintable(t *testing.T) {
	if got := Printable("a\nb\x00c\x7f\xff"); got != "abc\uFFFD" {
		t.Fatalf("Printable = %q", got)
	}
}
