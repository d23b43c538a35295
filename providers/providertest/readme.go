package providertest

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// READMEProvider is one provider of the handoff config examples in a
// plugin's README: an entry of a yaml example's providers list.
type READMEProvider struct {
	// Name is the provider's name.
	Name string
	// Kind is the provider's built-in kind; it is empty for a third-party
	// plugin, whose entry names a plugin binary instead.
	Kind string
	// Config is the provider's config section as JSON, as the daemon hands
	// it to the plugin's Configure (and so to its config decoder). It is
	// null when the entry has no config.
	Config json.RawMessage
	// Keys are the dotted paths of the keys the config section sets, as
	// ConfigKeys lists them.
	Keys []string
	// Entry is the whole provider entry as yaml decoded it: name, kind,
	// plugin, config, guards, deliver and the rest.
	Entry map[string]any
	// Doc is the whole yaml example the provider is in, for checks on
	// other sections of the config, such as redirect.allow.
	Doc map[string]any
}

var (
	yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")
	tableRow  = regexp.MustCompile("^\\| `([^`]+)` \\|")
)

// READMEProviders returns every provider of the given kind in the ```yaml
// blocks of the README at path, in the order they appear. Pass kind ""
// for a third-party plugin's providers, which have no kind. It fails t
// when the README cannot be read, a yaml block does not parse as a
// handoff config, or no provider of the kind is found.
func READMEProviders(t testing.TB, path, kind string) []READMEProvider {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out []READMEProvider
	for i, m := range yamlBlock.FindAllSubmatch(readme, -1) {
		var doc map[string]any
		if err := yaml.Unmarshal(m[1], &doc); err != nil {
			t.Fatalf("%s: yaml example %d: %v", path, i+1, err)
		}
		entries, _ := doc["providers"].([]any)
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			name, _ := entry["name"].(string)
			if k, _ := entry["kind"].(string); k != kind {
				continue
			}
			config, _ := entry["config"].(map[string]any)
			raw, err := json.Marshal(config)
			if err != nil {
				t.Fatalf("%s: yaml example %d: provider %s: %v", path, i+1, name, err)
			}
			out = append(out, READMEProvider{
				Name: name, Kind: kind, Config: raw, Keys: ConfigKeys(t, config),
				Entry: entry, Doc: doc,
			})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no yaml example has a provider of kind %q", path, kind)
	}
	return out
}

// CheckConfigTable checks the table of the "## Configuration" section of
// the README at path against the keys of defaults (a plugin's config, as
// ConfigKeys lists them), both ways: each key without a row and each row
// without a key is an error naming it. A row is a line that starts with
// "| `key` |". It fails t at once when the README cannot be read or has
// no Configuration section.
func CheckConfigTable(t testing.TB, path string, defaults any) {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var section []string
	in := false
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			in = strings.TrimSpace(line) == "## Configuration"
			continue
		}
		if in {
			section = append(section, line)
		}
	}
	if !in {
		t.Fatalf("%s has no ## Configuration section", path)
	}
	rows := map[string]bool{}
	for _, line := range section {
		m := tableRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if rows[m[1]] {
			t.Errorf("%s: the configuration table has two rows for %s", path, m[1])
		}
		rows[m[1]] = true
	}
	for _, k := range ConfigKeys(t, defaults) {
		if !rows[k] {
			t.Errorf("%s: the configuration table lacks a row for %s", path, k)
		}
		delete(rows, k)
	}
	extra := make([]string, 0, len(rows))
	for k := range rows {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		t.Errorf("%s: the configuration table has a row for %s, which is no config key", path, k)
	}
}

// ConfigKeys returns the dotted paths of v's keys in JSON, sorted: v is
// marshalled to JSON, and each object is walked down to its leaves, so
// {"a": 1, "b": {"c": 2}} has the keys a and b.c. An empty object, or a
// null, is a leaf, so a map-valued key with no entries is listed by its
// own name.
func ConfigKeys(t testing.TB, v any) []string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("config keys: %v", err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatalf("config keys: %v", err)
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		obj, ok := v.(map[string]any)
		if !ok || len(obj) == 0 {
			if prefix != "" {
				out = append(out, prefix)
			}
			return
		}
		for k, sub := range obj {
			if prefix != "" {
				k = prefix + "." + k
			}
			walk(k, sub)
		}
	}
	walk("", tree)
	sort.Strings(out)
	return out
}
