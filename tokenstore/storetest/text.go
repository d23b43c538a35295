package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// textCase is one string a name, email or subject may or may not be.
type textCase struct {
	name  string
	value string
	ok    bool
}

// textCases is every class of byte and character ValidText decides on,
// each inside otherwise ordinary text.
var textCases = []textCase{
	{"plain", "Ada Lovelace", true},
	{"accents", "Zoë Ãlvarez", true},
	{"right to left with RLM", "\u05d3\u05e0\u05d4\u200f", true},
	{"emoji with ZWJ", "\U0001F469\u200d\U0001F4BB", true},
	{"Persian with ZWNJ", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", true},
	{"invalid UTF-8 0xff", "Ada\xffLovelace", false},
	{"truncated UTF-8", "Zo\xc3", false},
	{"overlong UTF-8 NUL", "Ada\xc0\x80", false},
	{"NUL", "Ada\x00Lovelace", false},
	{"newline", "Ada\nLovelace", false},
	{"carriage return", "Ada\rLovelace", false},
	{"tab", "Ada\tLovelace", false},
	{"escape", "Ada\x1b[31m", false},
	{"DEL", "Ada\x7f", false},
	{"C1 NEL", "Ada\u0085Lovelace", false},
	{"line separator", "Ada\u2028Lovelace", false},
	{"paragraph separator", "Ada\u2029Lovelace", false},
	{"right-to-left override", "Ada\u202egnp.exe", false},
	{"left-to-right embedding", "Ada\u202aLovelace", false},
	{"first strong isolate", "Ada\u2068Lovelace", false},
	{"pop directional isolate", "Ada\u2069Lovelace", false},
}

var textTests = []test{
	{"UserText", testUserText},
	{"UserNameLength", testUserNameLength},
	{"UpdateUserText", testUpdateUserText},
	{"IdentityText", testIdentityText},
	{"IdentityBounds", testIdentityBounds},
}

// wantArgument checks that err is an ArgumentError about param.
func wantArgument(t *testing.T, what string, err error, param string) {
	t.Helper()
	var ae *tokenstore.ArgumentError
	if !errors.As(err, &ae) || ae.Param != param || !errors.Is(err, tokenstore.ErrInvalidArgument) {
		t.Fatalf("%s: err = %v, want an ArgumentError about %s", what, err, param)
	}
}

// wantIdentityError checks that err is an IdentityError about field.
func wantIdentityError(t *testing.T, what string, err error, field string) {
	t.Helper()
	var ie *tokenstore.IdentityError
	if !errors.As(err, &ie) || ie.Field != field || ie.Provider != "oidc" || !errors.Is(err, tokenstore.ErrInvalidIdentity) {
		t.Fatalf("%s: err = %v, want an IdentityError about %s", what, err, field)
	}
}

func testUserText(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for i, tc := range textCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: fmt.Sprintf("n%02d", i), Name: tc.value})
			if tc.ok {
				must(t, "CreateUser", err)
			} else {
				wantArgument(t, "CreateUser with the name", err, "name")
			}
			local := strings.NewReplacer(" ", "", "\u200f", "").Replace(tc.value)
			_, err = e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: fmt.Sprintf("e%02d", i), Email: local + "@example.com"})
			if tc.ok {
				must(t, "CreateUser", err)
			} else {
				wantArgument(t, "CreateUser with the email", err, "email")
			}
		})
	}
	// No refused user left a key behind.
	if n, want := e.count("users"), 2*countOK(textCases); n != want {
		t.Fatalf("%d users stored, want %d", n, want)
	}
}

func countOK(cases []textCase) int {
	n := 0
	for _, tc := range cases {
		if tc.ok {
			n++
		}
	}
	return n
}

func testUserNameLength(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("a", 128), true},
		{strings.Repeat("é", 128), true}, // 256 bytes, 128 characters
		{strings.Repeat("a", 129), false},
		{strings.Repeat("é", 129), false},
	} {
		_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{Name: tc.name})
		if tc.ok {
			must(t, fmt.Sprintf("CreateUser with a %d-byte name", len(tc.name)), err)
		} else {
			wantArgument(t, fmt.Sprintf("CreateUser with a %d-byte name", len(tc.name)), err, "name")
		}
	}
	_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{Email: strings.Repeat("a", 243) + "@example.com"})
	wantArgument(t, "CreateUser with a 255-byte email", err, "email")
}

func testUpdateUserText(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	for _, tc := range textCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.core.UpdateUser(e.ctx, "u1", func(u *tokenstore.User) error { u.Name = tc.value; return nil })
			if tc.ok {
				must(t, "UpdateUser", err)
				return
			}
			wantArgument(t, "UpdateUser of the name", err, "name")
			_, err = e.core.UpdateUser(e.ctx, "u1", func(u *tokenstore.User) error { u.Email = "x" + tc.value + "@example.com"; return nil })
			wantArgument(t, "UpdateUser of the email", err, "email")
			_, err = e.core.UpdateUser(e.ctx, "u1", func(u *tokenstore.User) error { u.Phone = "+1555" + tc.value; return nil })
			wantArgument(t, "UpdateUser of the phone", err, "phone")
		})
	}
	got, err := e.core.GetUser(e.ctx, "u1")
	must(t, "GetUser", err)
	if !tokenstore.ValidName(got.Name) || got.Email != "u1@example.com" || got.Phone != "" {
		t.Fatalf("a refused update changed the user: %+v", got)
	}
}

// testIdentityText: what a plugin reports about a user is held to the
// same rules as what an API key caller sends; the refusal names the field
// and nothing is stored.
func testIdentityText(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	create := tokenstore.LinkPolicy{Create: true}
	for i, tc := range textCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []struct {
				field string
				id    tokenstore.Identity
			}{
				{"subject", tokenstore.Identity{Subject: fmt.Sprintf("s%02d-%s", i, tc.value)}},
				{"name", tokenstore.Identity{Subject: fmt.Sprintf("n%02d", i), Name: tc.value}},
				{"email", tokenstore.Identity{Subject: fmt.Sprintf("e%02d", i), Email: fmt.Sprintf("e%02d%s@example.com", i, strings.ReplaceAll(tc.value, " ", ""))}},
				{"phone", tokenstore.Identity{Subject: fmt.Sprintf("p%02d", i), Phone: fmt.Sprintf("+1555%02d%s", i, tc.value)}},
			} {
				f.id.Provider = "oidc"
				_, _, err := e.core.ResolveIdentity(e.ctx, f.id, create)
				if tc.ok {
					must(t, "ResolveIdentity with the "+f.field, err)
					continue
				}
				wantIdentityError(t, "ResolveIdentity with the "+f.field, err, f.field)
			}
		})
	}
	if n, want := e.count("identities"), 4*countOK(textCases); n != want {
		t.Fatalf("%d identities stored, want %d", n, want)
	}
	if n, want := e.count("users"), 4*countOK(textCases); n != want {
		t.Fatalf("%d users stored, want %d", n, want)
	}
}

// testIdentityBounds is the attack of a plugin (or its IdP) reporting a
// 32 KiB subject: refused as an invalid identity, not a store error.
func testIdentityBounds(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	create := tokenstore.LinkPolicy{Create: true, LinkByEmail: true}
	big := map[string]any{"groups": strings.Repeat("g", tokenstore.MaxClaimsSize)}
	for _, tc := range []struct {
		name  string
		id    tokenstore.Identity
		field string // "" when it is accepted
	}{
		{"subject of 32 KiB", tokenstore.Identity{Subject: strings.Repeat("s", 32<<10)}, "subject"},
		{"subject of 1025 bytes", tokenstore.Identity{Subject: strings.Repeat("s", 1025)}, "subject"},
		{"subject of 1024 bytes", tokenstore.Identity{Subject: strings.Repeat("s", 1024)}, ""},
		{"empty subject", tokenstore.Identity{}, "subject"},
		{"email of 255 bytes", tokenstore.Identity{Subject: "e", Email: strings.Repeat("a", 243) + "@example.com"}, "email"},
		{"phone of 65 bytes", tokenstore.Identity{Subject: "p", Phone: "+" + strings.Repeat("1", 64)}, "phone"},
		{"formatted phone", tokenstore.Identity{Subject: "fp", Phone: "+1 (604) 555-1234;ext=5678"}, ""},
		{"name of 129 characters", tokenstore.Identity{Subject: "n", Name: strings.Repeat("é", 129)}, "name"},
		{"claims over 32 KiB", tokenstore.Identity{Subject: "c", Claims: big}, "claims"},
		{"claims of a few bytes", tokenstore.Identity{Subject: "c2", Claims: map[string]any{"hd": "example.com"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.id.Provider = "oidc"
			_, _, err := e.core.ResolveIdentity(e.ctx, tc.id, create)
			if tc.field == "" {
				must(t, "ResolveIdentity", err)
			} else {
				wantIdentityError(t, "ResolveIdentity", err, tc.field)
			}
			tc.id.UserID = "u1"
			_, err = e.core.LinkIdentity(e.ctx, tc.id)
			if tc.field == "" {
				must(t, "LinkIdentity", err)
			} else {
				wantIdentityError(t, "LinkIdentity", err, tc.field)
			}
		})
	}
	if n := e.count("identities"); n != 3 {
		t.Fatalf("%d identities stored, want the 3 accepted ones", n)
	}
}
