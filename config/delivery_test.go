package config

import (
	"errors"
	"slices"
	"testing"
)

// TestValidateDelivery: a provider whose verifier does not prove identity
// may deliver only out of band, and the problem names the key and the
// reason; one that proves identity, or one that cannot be told, may use
// any mode.
func TestValidateDelivery(t *testing.T) {
	proves := func(p Provider) (bool, bool) {
		switch p.Kind {
		case "captcha":
			return false, true
		case "password":
			return true, true
		}
		return false, false // a plugin not started yet
	}
	cases := []struct {
		name string
		p    Provider
		want string // the problem's key, "" for none
	}{
		{"captcha response", Provider{Kind: "captcha", Deliver: Deliver{Via: DeliverResponse}}, "providers[0].deliver.via"},
		{"captcha redirect", Provider{Kind: "captcha", Deliver: Deliver{Via: DeliverRedirect}}, "providers[0].deliver.via"},
		{"captcha unset", Provider{Kind: "captcha"}, "providers[0].deliver.via"},
		{"captcha unknown mode", Provider{Kind: "captcha", Deliver: Deliver{Via: "pigeon"}}, "providers[0].deliver.via"},
		{"captcha webhook", Provider{Kind: "captcha", Deliver: Deliver{Via: DeliverWebhook}}, ""},
		{"captcha email", Provider{Kind: "captcha", Deliver: Deliver{Via: DeliverEmail}}, ""},
		{"captcha sms", Provider{Kind: "captcha", Deliver: Deliver{Via: DeliverSMS}}, ""},
		{"password response", Provider{Kind: "password", Deliver: Deliver{Via: DeliverResponse}}, ""},
		{"password redirect", Provider{Kind: "password", Deliver: Deliver{Via: DeliverRedirect}}, ""},
		{"plugin not known yet", Provider{Plugin: &Plugin{Path: "/bin/x"}, Deliver: Deliver{Via: DeliverResponse}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Providers: []Provider{tc.p}}.ValidateDelivery(proves)
			var ps Problems
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case tc.want == "":
			case !errors.As(err, &ps) || len(ps) != 1 || ps[0].Key != tc.want:
				t.Fatalf("got %v, want a problem at %s", err, tc.want)
			}
		})
	}
}

// TestOutOfBand: only webhook, email and sms keep the secret out of HTTP
// answers; an unset or unknown mode does not.
func TestOutOfBand(t *testing.T) {
	for mode, want := range map[DeliveryMode]bool{
		DeliverWebhook: true, DeliverEmail: true, DeliverSMS: true,
		DeliverResponse: false, DeliverRedirect: false, "": false, "pigeon": false,
	} {
		if got := mode.OutOfBand(); got != want {
			t.Errorf("%q.OutOfBand() = %v, want %v", mode, got, want)
		}
	}
}

// TestValidateDeliveryGuardOnly: a verifier that does not prove identity
// and that another provider lists in guards needs no delivery: it mints
// nothing. The attack on the old rule is the README's example, a captcha
// guard without deliver, refused at start although no secret of its own
// could ever go anywhere. Not being a guard, or guarding only itself,
// keeps the rule.
func TestValidateDeliveryGuardOnly(t *testing.T) {
	proves := func(p Provider) (bool, bool) { return p.Kind != "captcha", true }
	captcha := func(via DeliveryMode) Provider {
		return Provider{Name: "captcha", Kind: "captcha", Deliver: Deliver{Via: via}}
	}
	password := Provider{Name: "password", Kind: "password", Guards: []string{"captcha"}}
	cases := []struct {
		name      string
		ps        []Provider
		want      string // the problem's key, "" for none
		guardOnly bool
	}{
		{"guard, no deliver", []Provider{captcha(""), password}, "", true},
		{"guard, response", []Provider{captcha(DeliverResponse), password}, "", true},
		{"guard, redirect", []Provider{captcha(DeliverRedirect), password}, "", true},
		{"guard and sign-in by webhook", []Provider{captcha(DeliverWebhook), password}, "", false},
		{"not a guard", []Provider{captcha(""), {Name: "password", Kind: "password"}}, "providers[0].deliver.via", false},
		{"guards only itself", []Provider{{Name: "captcha", Kind: "captcha", Guards: []string{"captcha"}}}, "providers[0].deliver.via", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Providers: tc.ps}
			err := c.ValidateDelivery(proves)
			var ps Problems
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected: %v", err)
			case tc.want == "":
			case !errors.As(err, &ps) || len(ps) != 1 || ps[0].Key != tc.want:
				t.Fatalf("got %v, want a problem at %s", err, tc.want)
			}
			if got := c.GuardOnly("captcha"); got != tc.guardOnly {
				t.Errorf("GuardOnly = %v, want %v", got, tc.guardOnly)
			}
		})
	}
}

// TestValidE164: the numbers a text may go to, + and 8 to 15 digits, the
// first not 0; Appwrite's looser "+1234" is not one.
func TestValidE164(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"+14155550123", true},
		{"+4915112345678", true},
		{"+12345678", true},          // 8 digits
		{"+123456789012345", true},   // 15 digits
		{"+1234567", false},          // 7 digits
		{"+1234567890123456", false}, // 16 digits
		{"+1234", false},
		{"14155550123", false}, // no +
		{"+04155550123", false},
		{"+1 415 555 0123", false},
		{"+1-415-555-0123", false},
		{"+1415555012a", false},
		{"++14155550123", false},
		{"+１４１５５５５０１２３", false}, // fullwidth digits
		{"", false},
		{"+", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := ValidE164(tc.in); got != tc.want {
				t.Fatalf("ValidE164(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestValidateChannels: deliver.sms and the magic-URL link are checked
// with their key paths. A link off redirect.allow would mail the secret
// to a host the app does not own.
func TestValidateChannels(t *testing.T) {
	twilio := SMS{Provider: SMSTwilio, AccountSID: "AC1", AuthToken: "t", From: "+15005550006"}
	gateway := SMS{Provider: SMSHTTP, URL: "https://sms.example.com/send", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
	email := Email{SMTP: "smtp.example.com:587", From: "a@example.com", TLS: "starttls"}
	sms := func(s SMS) func(*Config) {
		return func(c *Config) { c.Providers[0].Deliver = Deliver{Via: DeliverSMS, SMS: s} }
	}
	link := func(l string) func(*Config) {
		return func(c *Config) {
			e := email
			e.Link = l
			c.Providers[0].Deliver = Deliver{Via: DeliverEmail, Email: e}
		}
	}
	const key = "providers[0].deliver."
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"twilio", sms(twilio), nil},
		{"twilio messaging service", sms(SMS{Provider: SMSTwilio, AccountSID: "AC1", AuthToken: "t", MessagingServiceSID: "MG1"}), nil},
		{"twilio alphanumeric sender", sms(SMS{Provider: SMSTwilio, AccountSID: "AC1", AuthToken: "t", From: "MyApp"}), nil},
		{"twilio empty", sms(SMS{Provider: SMSTwilio}), []string{key + "sms.account_sid", key + "sms.auth_token", key + "sms.from"}},
		{"twilio bad from", sms(SMS{Provider: SMSTwilio, AccountSID: "AC1", AuthToken: "t", From: "555-0123"}), []string{key + "sms.from"}},
		{"twilio bad base_url", sms(SMS{Provider: SMSTwilio, AccountSID: "AC1", AuthToken: "t", From: "+15005550006", BaseURL: "api.twilio.com"}), []string{key + "sms.base_url"}},
		{"http", sms(gateway), nil},
		{"http empty", sms(SMS{Provider: SMSHTTP}), []string{key + "sms.url", key + "sms.secret"}},
		{"http bad secret", sms(SMS{Provider: SMSHTTP, URL: "https://sms.example.com", Secret: "hunter2"}), []string{key + "sms.secret"}},
		{"unknown provider", sms(SMS{Provider: "pigeon"}), []string{key + "sms.provider"}},
		{"bad template", sms(SMS{Provider: SMSHTTP, URL: gateway.URL, Secret: gateway.Secret, Template: "{{.Secret"}), []string{key + "sms.template"}},
		{"sms_per_number negative", func(c *Config) { c.Limits.SMSPerNumber = -1 }, []string{"limits.sms_per_number"}},
		{"link on redirect.allow", link("https://app.example.com/auth/magic"), nil},
		{"link with a query", link("https://app.example.com/auth/magic?lang=en"), nil},
		{"link on another host", link("https://evil.example.net/auth/magic"), []string{key + "email.link"}},
		{"link off the prefix", link("https://app.example.com/authx"), []string{key + "email.link"}},
		{"link with dot segments", link("https://app.example.com/auth/../admin"), []string{key + "email.link"}},
		{"link over http", link("http://app.example.com/auth/magic"), []string{key + "email.link"}},
		{"link with a fragment", link("https://app.example.com/auth/magic#x"), []string{key + "email.link"}},
		{"bad html template", func(c *Config) {
			e := email
			e.HTMLTemplate = "{{if}}"
			c.Providers[0].Deliver = Deliver{Via: DeliverEmail, Email: e}
		}, []string{key + "email.html_template"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			c.Providers[0].Deliver.Via = DeliverResponse
			tc.change(&c)
			err := c.Validate()
			var ps Problems
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if !errors.As(err, &ps) || !slices.Equal(problemKeys(ps), tc.want) {
				t.Fatalf("Validate() = %v, want problems at %v", err, tc.want)
			}
		})
	}
}
