package providertest_test

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// demoConfig is the config of the plugin testdata/good.md documents.
type demoConfig struct {
	URL   string `json:"url"`
	Retry struct {
		Max  int    `json:"max"`
		Wait string `json:"wait"`
	} `json:"retry"`
	Headers map[string]string `json:"headers"`
}

// recorder is a testing.TB that records failures instead of failing, so a
// test can check what a helper reports. Fatalf ends the helper's goroutine.
type recorder struct {
	testing.TB
	errs  []string
	fatal bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.fatal = true
	runtime.Goexit()
}

// record runs fn with a recorder in a goroutine of its own and returns it.
func record(t *testing.T, fn func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func TestREADMEProviders(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		want       []providertest.READMEProvider // Entry and Doc checked apart
	}{
		{"built-in kind, across blocks", "demo", []providertest.READMEProvider{
			{Name: "first", Kind: "demo", Config: []byte(`{"retry":{"max":5},"url":"https://a.example/"}`), Keys: []string{"retry.max", "url"}},
			{Name: "second", Kind: "demo", Config: []byte(`null`)},
		}},
		{"third-party plugin", "", []providertest.READMEProvider{
			{Name: "thirdparty", Config: []byte(`{"headers":{"X-Key":"k"},"url":"https://b.example/"}`), Keys: []string{"headers.X-Key", "url"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := providertest.READMEProviders(t, "testdata/good.md", tc.kind)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d providers, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Name != w.Name || g.Kind != w.Kind || string(g.Config) != string(w.Config) || !reflect.DeepEqual(g.Keys, w.Keys) {
					t.Errorf("provider %d: got %s %q %s %q, want %s %q %s %q", i, g.Name, g.Kind, g.Config, g.Keys, w.Name, w.Kind, w.Config, w.Keys)
				}
				if g.Entry["name"] != w.Name || g.Doc["providers"] == nil {
					t.Errorf("provider %d: entry %v, doc %v", i, g.Entry, g.Doc)
				}
			}
		})
	}

	ps := providertest.READMEProviders(t, "testdata/good.md", "demo")
	if redirect, _ := ps[0].Doc["redirect"].(map[string]any); !reflect.DeepEqual(redirect["allow"], []any{"https://app.example.com/"}) {
		t.Errorf("first: doc %v lacks redirect.allow", ps[0].Doc)
	}
	if !reflect.DeepEqual(ps[1].Entry["guards"], []any{"other"}) {
		t.Errorf("second: entry %v lacks guards", ps[1].Entry)
	}
}

func TestREADMEHelpersReport(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fn    func(tb testing.TB)
		fatal bool
		want  []string // each a part of one reported error, in order
	}{
		{"good table", func(tb testing.TB) { providertest.CheckConfigTable(tb, "testdata/good.md", demoConfig{}) }, false, nil},
		{"missing and extra row", func(tb testing.TB) { providertest.CheckConfigTable(tb, "testdata/bad.md", demoConfig{}) }, false, []string{
			"the configuration table lacks a row for retry.wait",
			"the configuration table has a row for timeout, which is no config key",
		}},
		{"no Configuration section", func(tb testing.TB) {
			providertest.CheckConfigTable(tb, "testdata/good.md", demoConfig{})
			providertest.CheckConfigTable(tb, "readme.go", demoConfig{})
		}, true, []string{"readme.go has no ## Configuration section"}},
		{"no README", func(tb testing.TB) { providertest.READMEProviders(tb, "testdata/missing.md", "demo") }, true, []string{"missing.md"}},
		{"unknown kind", func(tb testing.TB) { providertest.READMEProviders(tb, "testdata/bad.md", "nosuch") }, true, []string{
			`testdata/bad.md: no yaml example has a provider of kind "nosuch"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := record(t, tc.fn)
			if r.fatal != tc.fatal || len(r.errs) != len(tc.want) {
				t.Fatalf("fatal %v, errors %q; want fatal %v, %d errors", r.fatal, r.errs, tc.fatal, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(r.errs[i], w) {
					t.Errorf("error %d %q, want %q", i, r.errs[i], w)
				}
			}
		})
	}
}

func TestConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"struct", demoConfig{}, []string{"headers", "retry.max", "retry.wait", "url"}},
		{"map with entries", map[string]any{"b": map[string]any{"c": 1, "d": []int{1}}, "a": nil}, []string{"a", "b.c", "b.d"}},
		{"empty object is a leaf", map[string]any{"h": map[string]string{}}, []string{"h"}},
		{"nil", nil, nil},
		{"not an object", "x", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := providertest.ConfigKeys(t, tc.v); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConfigErrorKeys(t *testing.T) {
	err := errors.Join(&sdk.ConfigError{Key: "a", Message: "x"}, errors.Join(&sdk.ConfigError{Key: "b.c", Message: "y"}))
	if got := providertest.ConfigErrorKeys(t, err); strings.Join(got, " ") != "a b.c" {
		t.Fatalf("keys %q", got)
	}
	if got := providertest.ConfigErrorKeys(t, nil); len(got) != 0 {
		t.Fatalf("keys of nil: %q", got)
	}
}
