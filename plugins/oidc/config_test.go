package oidc

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestREADMEConfig parses every provider example of the README with the
// plugin's own decoder, checks that the complete (first) example is an
// Auth0 preset that spells out the defaults, and that the configuration
// table names every config key, and no key the plugin does not have.
func TestREADMEConfig(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no yaml example")
	}
	for i, m := range blocks {
		var doc struct {
			Redirect struct {
				Allow []string `yaml:"allow"`
			} `yaml:"redirect"`
			Providers []struct {
				Name   string         `yaml:"name"`
				Kind   string         `yaml:"kind"`
				Config map[string]any `yaml:"config"`
			} `yaml:"providers"`
		}
		if err := yaml.Unmarshal(m[1], &doc); err != nil {
			t.Fatalf("yaml example %d: %v", i+1, err)
		}
		if len(doc.Providers) != 1 || doc.Providers[0].Kind != "oidc" {
			t.Fatalf("yaml example %d: want one oidc provider, got %+v", i+1, doc.Providers)
		}
		raw, _ := json.Marshal(doc.Providers[0].Config)
		cfg, err := ParseConfig(raw)
		if err != nil {
			t.Fatalf("yaml example %d does not parse: %v", i+1, err)
		}
		if i > 0 {
			continue
		}
		// The complete example: Auth0, with the redirect allow-list the
		// flow needs, every key the preset allows, the defaults spelled out.
		if doc.Providers[0].Name != "auth0" || cfg.Preset != PresetAuth0 || cfg.Issuer != "https://"+cfg.Domain+"/" || len(doc.Redirect.Allow) == 0 {
			t.Errorf("the first example should be a complete Auth0 provider named auth0 with redirect.allow: %+v", doc)
		}
		for _, k := range []string{"client_secret_file", "audiences", "claims", "scopes", "userinfo", "http_timeout"} {
			if _, ok := doc.Providers[0].Config[k]; !ok {
				t.Errorf("the first example lacks %s", k)
			}
		}
		def := DefaultConfig()
		if !reflect.DeepEqual(cfg.Scopes, def.Scopes) || cfg.Claims != def.Claims || cfg.HTTPTimeout != def.HTTPTimeout || cfg.Userinfo {
			t.Errorf("the first example %+v should spell out the defaults", cfg)
		}
	}

	// The configuration table against the config's keys, both ways.
	section := string(readme)
	start := strings.Index(section, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("README.md has no Configuration section")
	}
	section = section[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	inTable := map[string]bool{}
	for _, row := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		inTable[row[1]] = true
	}
	var tree map[string]any
	full, _ := json.Marshal(DefaultConfig())
	if err := json.Unmarshal(full, &tree); err != nil {
		t.Fatal(err)
	}
	keys := flattenKeys(tree, "")
	for _, k := range keys {
		if !inTable[k] {
			t.Errorf("the README's configuration table lacks %s", k)
		}
		delete(inTable, k)
	}
	for k := range inTable {
		t.Errorf("the README's configuration table names %s, which is no config key", k)
	}
	if len(keys) != 16 {
		t.Errorf("config keys %q: update the README", keys)
	}
}

// flattenKeys lists the dotted key paths of a decoded JSON object.
func flattenKeys(tree map[string]any, prefix string) []string {
	var out []string
	for k, v := range tree {
		if sub, ok := v.(map[string]any); ok {
			out = append(out, flattenKeys(sub, prefix+k+".")...)
			continue
		}
		out = append(out, prefix+k)
	}
	sort.Strings(out)
	return out
}
