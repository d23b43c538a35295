package config

import (
	"errors"
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

// TestOutOfBand: only webhook and email keep the secret out of HTTP
// answers; an unset or unknown mode does not.
func TestOutOfBand(t *testing.T) {
	for mode, want := range map[DeliveryMode]bool{
		DeliverWebhook: true, DeliverEmail: true,
		DeliverResponse: false, DeliverRedirect: false, "": false, "sms": false,
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
