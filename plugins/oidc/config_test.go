package oidc

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
)

// TestREADMEConfig parses every provider example of the README with the
// plugin's own decoder, checks that the complete (first) example is an
// Auth0 preset that spells out the defaults, and checks the configuration
// table against the config's keys.
func TestREADMEConfig(t *testing.T) {
	ps := providertest.READMEProviders(t, "README.md", "oidc")
	for _, p := range ps {
		if _, err := ParseConfig(p.Config); err != nil {
			t.Fatalf("the README's %s example does not parse: %v", p.Name, err)
		}
	}
	// The complete example: Auth0, with the redirect allow-list the flow
	// needs, every key the preset allows, the defaults spelled out.
	first := ps[0]
	cfg, _ := ParseConfig(first.Config)
	redirect, _ := first.Doc["redirect"].(map[string]any)
	allow, _ := redirect["allow"].([]any)
	if first.Name != "auth0" || cfg.Preset != PresetAuth0 || cfg.Issuer != "https://"+cfg.Domain+"/" || len(allow) == 0 {
		t.Errorf("the first example should be a complete Auth0 provider named auth0 with redirect.allow: %+v", first.Doc)
	}
	for _, k := range []string{"client_secret_file", "audiences", "claims", "scopes", "userinfo", "http_timeout"} {
		if !slices.ContainsFunc(first.Keys, func(s string) bool { return s == k || strings.HasPrefix(s, k+".") }) {
			t.Errorf("the first example lacks %s", k)
		}
	}
	def := DefaultConfig()
	if !reflect.DeepEqual(cfg.Scopes, def.Scopes) || cfg.Claims != def.Claims || cfg.HTTPTimeout != def.HTTPTimeout || cfg.Userinfo {
		t.Errorf("the first example %+v should spell out the defaults", cfg)
	}
	providertest.CheckConfigTable(t, "README.md", def)
}
