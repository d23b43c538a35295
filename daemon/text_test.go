package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/handoffd/handoff/config"
)

// TestCreateUserText: a user's name and email must be valid UTF-8 without
// control, line-separator or bidi override characters; anything else is a
// 400 in Appwrite's shape, naming the param, and creates nothing.
func TestCreateUserText(t *testing.T) {
	s := newTestServer(t)
	bad := []struct{ name, value string }{
		{"NUL", "Ada\x00Lovelace"},
		{"newline", "Ada\nLovelace"},
		{"tab", "Ada\tLovelace"},
		{"escape", "Ada\x1b[2J"},
		{"DEL", "Ada\x7f"},
		{"C1 NEL", "Ada\u0085"},
		{"line separator", "Ada\u2028"},
		{"right-to-left override", "Ada\u202egnp.exe"},
		{"pop directional isolate", "Ada\u2069"},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []struct{ param, value string }{
				{"name", tc.value},
				{"email", strings.ReplaceAll(tc.value, " ", "") + "@example.com"},
			} {
				body := map[string]any{"userId": fmt.Sprintf("u%02d", i), f.param: f.value}
				r := s.do(req{method: "POST", path: "/v1/users", key: true, body: body})
				wantError(t, r, 400, "general_argument_invalid")
				if msg := r.json(t)["message"].(string); !strings.HasPrefix(msg, "Invalid `"+f.param+"` param: ") {
					t.Fatalf("%s: message %q", f.param, msg)
				}
			}
		})
	}
	// Invalid UTF-8 cannot come in JSON (the decoder makes it U+FFFD), but
	// it can in the query string or a form body.
	t.Run("invalid UTF-8 0xff", func(t *testing.T) {
		for _, q := range []string{"name=Ada%FFLovelace", "email=ada%FF@example.com", "name=Zo%C3"} {
			r := s.do(req{method: "POST", path: "/v1/users?" + q, key: true, body: map[string]any{"userId": "utf8"}})
			wantError(t, r, 400, "general_argument_invalid")
			form := "userId=utf8form&" + q
			r = s.do(req{method: "POST", path: "/v1/users", key: true, body: form, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
			wantError(t, r, 400, "general_argument_invalid")
		}
	})
	if r := s.do(req{method: "GET", path: "/v1/users", key: true}); r.json(t)["total"] != float64(0) {
		t.Fatalf("refused users were created: %s", r.body)
	}
	// What real names need still passes, and 128 characters is counted
	// in characters, as Appwrite counts it.
	for i, name := range []string{"Zoë Ãlvarez", "\u05d3\u05e0\u05d4\u200f", "\U0001F469\u200d\U0001F4BB", strings.Repeat("é", 128)} {
		r := s.do(req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": fmt.Sprintf("ok%d", i), "name": name}})
		if r.status != 201 || r.json(t)["name"] != name {
			t.Fatalf("name %q: %d %s", name, r.status, r.body)
		}
	}
	wantError(t, s.do(req{method: "POST", path: "/v1/users", key: true, body: map[string]any{"userId": "long", "name": strings.Repeat("é", 129)}}), 400, "general_argument_invalid")
}

// TestProviderInvalidIdentity is the attack of a plugin (or the IdP
// behind it) reporting a 32 KiB subject, which bbolt cannot hold as a key
// (a 500 before), or a name with a bidi override: both are a clear 502
// provider_invalid_identity naming the field, logged without the value,
// and create no user.
func TestProviderInvalidIdentity(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *config.Config) {
		c.Providers = []config.Provider{
			echoProvider(t, "echo", nil),
			echoProvider(t, "spoof", func(p *config.Provider) { p.Config = map[string]any{"greeting": "Ada\u202egnp.exe"} }),
		}
	}, withLogs(logs))
	huge := "huge" + strings.Repeat("s", 32<<10)
	for _, tc := range []struct {
		name, provider, subject, field string
	}{
		{"subject of 32 KiB", "echo", huge, "subject"},
		{"subject of 1025 bytes", "echo", strings.Repeat("s", 1025), "subject"},
		{"subject with a NUL", "echo", "sub\x00ject", "subject"},
		{"name with a bidi override", "spoof", "fine", "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.verify(tc.provider, map[string]any{"subject": tc.subject}, nil)
			wantError(t, r, 502, "provider_invalid_identity")
			if msg := r.json(t)["message"].(string); !strings.Contains(msg, "its "+tc.field+" ") {
				t.Fatalf("message %q does not name the %s", msg, tc.field)
			}
		})
	}
	if r := s.do(req{method: "GET", path: "/v1/users", key: true}); r.json(t)["total"] != float64(0) {
		t.Fatalf("users were created from refused identities: %s", r.body)
	}
	if r := s.verify("echo", map[string]any{"subject": strings.Repeat("s", 1024)}, nil); r.status != 201 {
		t.Fatalf("a 1024-byte subject: %d %s", r.status, r.body)
	}
	out := logs.String()
	if !strings.Contains(out, "provider reported an invalid identity") || strings.Contains(out, huge[:64]) || strings.Contains(out, "gnp.exe") {
		t.Fatalf("the refusal is not logged, or logged with the value: %q", out)
	}
}
