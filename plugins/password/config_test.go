package password

import (
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

func TestConfigDefaults(t *testing.T) {
	for _, raw := range []string{"", "null", "{}"} {
		cfg, err := ParseConfig(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		want := argon2Params{Memory: 19456, Time: 2, Threads: 1}
		if cfg.params() != want || cfg.MinLength != 8 || cfg.MaxLength != 256 ||
			cfg.Lockout.Attempts != 5 || cfg.Lockout.Duration.Duration != 15*time.Minute ||
			cfg.MaxConcurrent != 0 || cfg.concurrency() != runtime.GOMAXPROCS(0) || cfg.InsecureFast {
			t.Fatalf("%q: defaults %+v", raw, cfg)
		}
	}
}

func TestConfigValid(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		check     func(Config) bool
	}{
		{"duration string", `{"lockout": {"duration": "1h30m"}}`, func(c Config) bool { return c.Lockout.Duration.Duration == 90*time.Minute }},
		{"duration seconds", `{"lockout": {"duration": 900}}`, func(c Config) bool { return c.Lockout.Duration.Duration == 15*time.Minute }},
		{"duration seconds as a string", `{"lockout": {"duration": "60"}}`, func(c Config) bool { return c.Lockout.Duration.Duration == time.Minute }},
		{"lockout off", `{"lockout": {"attempts": 0}}`, func(c Config) bool { return c.Lockout.Attempts == 0 }},
		{"one pass with 46 MiB", `{"argon2": {"memory": 47104, "time": 1}}`, func(c Config) bool { return c.Argon2.Time == 1 }},
		{"stronger", `{"argon2": {"memory": 65536, "time": 3, "threads": 4}}`, func(c Config) bool { return c.params() == argon2Params{65536, 3, 4} }},
		{"insecure_fast allows tiny", `{"insecure_fast": true, "argon2": {"memory": 8, "time": 1}, "lockout": {"duration": "10ms"}}`,
			func(c Config) bool { return c.Argon2.Memory == 8 && c.Lockout.Duration.Duration == 10*time.Millisecond }},
		{"max_concurrent", `{"max_concurrent": 3}`, func(c Config) bool { return c.concurrency() == 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(json.RawMessage(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Fatalf("got %+v", cfg)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		keys      []string // every key reported, in order
	}{
		{"memory below OWASP", `{"argon2": {"memory": 4096}}`, []string{"argon2.memory"}},
		{"memory above 1 GiB", `{"argon2": {"memory": 2000000}}`, []string{"argon2.memory"}},
		{"memory below 8 per thread even when fast", `{"insecure_fast": true, "argon2": {"memory": 8, "threads": 2}}`, []string{"argon2.memory"}},
		{"one pass at 19 MiB", `{"argon2": {"time": 1}}`, []string{"argon2.time"}},
		{"zero passes", `{"argon2": {"time": 0}}`, []string{"argon2.time"}},
		{"threads", `{"argon2": {"threads": 0}}`, []string{"argon2.threads"}},
		{"min_length", `{"min_length": 0}`, []string{"min_length"}},
		{"max_length below min", `{"min_length": 12, "max_length": 10}`, []string{"max_length"}},
		{"max_length huge", `{"max_length": 100000}`, []string{"max_length"}},
		{"attempts", `{"lockout": {"attempts": 101}}`, []string{"lockout.attempts"}},
		{"duration unreadable", `{"lockout": {"duration": "soon"}}`, []string{"lockout.duration"}},
		{"duration negative", `{"lockout": {"duration": -5}}`, []string{"lockout.duration"}},
		{"duration too short", `{"lockout": {"duration": "10ms"}}`, []string{"lockout.duration"}},
		{"duration too long", `{"lockout": {"duration": "48h"}}`, []string{"lockout.duration"}},
		{"max_concurrent", `{"max_concurrent": -1}`, []string{"max_concurrent"}},
		{"everything at once", `{"argon2": {"memory": 1, "time": 0, "threads": 0}, "min_length": 0, "max_length": 0, "lockout": {"attempts": -1, "duration": "x"}, "max_concurrent": 5000}`,
			[]string{"argon2.threads", "argon2.time", "min_length", "max_length", "lockout.attempts", "lockout.duration", "max_concurrent"}},
		{"unknown key", `{"argon2": {"memroy": 1}}`, []string{"argon2.memroy"}},
		{"wrong type", `{"min_length": "eight"}`, []string{"min_length"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(json.RawMessage(tc.raw))
			if !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Fatalf("err %v, want a config error", err)
			}
			keys := providertest.ConfigErrorKeys(t, err)
			if strings.Join(keys, " ") != strings.Join(tc.keys, " ") {
				t.Fatalf("keys %q, want %q (%v)", keys, tc.keys, err)
			}
		})
	}
}

// TestREADMEConfig parses the README's complete provider example with the
// plugin's own decoder, checks that it sets every key to its default, and
// checks the configuration table against the config's keys.
func TestREADMEConfig(t *testing.T) {
	ps := providertest.READMEProviders(t, "README.md", "password")
	if len(ps) != 1 {
		t.Fatalf("want one password provider, got %+v", ps)
	}
	cfg, err := ParseConfig(ps[0].Config)
	if err != nil {
		t.Fatalf("the README example does not parse: %v", err)
	}
	def := DefaultConfig()
	def.MaxConcurrent = 2
	if cfg != def {
		t.Fatalf("the README example %+v should spell out the defaults %+v", cfg, def)
	}
	if all := providertest.ConfigKeys(t, DefaultConfig()); !slices.Equal(ps[0].Keys, all) {
		t.Errorf("the example sets %q, the config has %q", ps[0].Keys, all)
	}
	providertest.CheckConfigTable(t, "README.md", DefaultConfig())
}
