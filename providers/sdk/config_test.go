package sdk_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

type inner struct {
	Port int    `json:"port"`
	Host string `json:"host"`
}

type embedded struct {
	Region string `json:"region"`
}

type testConfig struct {
	embedded
	Issuer   string            `json:"issuer"`
	Digits   int               `json:"digits"`
	SMTP     inner             `json:"smtp"`
	Backups  []inner           `json:"backups"`
	Labels   map[string]string `json:"labels"`
	Servers  map[string]inner  `json:"servers"`
	Optional *inner            `json:"optional"`
	Skip     string            `json:"-"`
	Untagged bool
	Raw      json.RawMessage `json:"raw"`
	Window   textDuration    `json:"window"`
}

// textDuration decodes itself; its content is not checked for keys.
type textDuration time.Duration

func (d *textDuration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = textDuration(v)
	return err
}

func TestDecodeConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     string
		errs    []string // substrings, in order
		keys    []string // ConfigError keys
		check   func(t *testing.T, c testConfig)
		wantErr bool
	}{
		{name: "empty", raw: "", check: func(t *testing.T, c testConfig) {
			if c.Digits != 6 {
				t.Errorf("default lost: %+v", c)
			}
		}},
		{name: "null", raw: "null"},
		{name: "valid", raw: `{"issuer":"MyApp","digits":8,"region":"eu","smtp":{"port":25},"backups":[{"host":"a"}],"labels":{"x":"y"},"servers":{"a":{"port":1}},"optional":{"port":2},"Untagged":true,"raw":{"anything":1},"window":"30s"}`,
			check: func(t *testing.T, c testConfig) {
				if c.Issuer != "MyApp" || c.Digits != 8 || c.Region != "eu" || c.SMTP.Port != 25 || c.Optional.Port != 2 || time.Duration(c.Window) != 30*time.Second || !c.Untagged {
					t.Errorf("decoded %+v", c)
				}
			}},
		{name: "case-insensitive like encoding/json", raw: `{"Issuer":"x"}`},
		{name: "unknown top-level", raw: `{"issuer":"x","isuer":"y"}`, keys: []string{"isuer"}, errs: []string{"config: isuer: unknown key"}},
		{name: "every unknown key", raw: `{"b":1,"a":2,"smtp":{"prot":1},"backups":[{},{"hots":1}],"servers":{"s1":{"x":1}},"optional":{"y":1},"-":1,"Skip":1}`,
			keys: []string{"-", "Skip", "a", "b", "backups[1].hots", "optional.y", "servers.s1.x", "smtp.prot"}},
		{name: "type error names the key", raw: `{"smtp":{"port":"25"}}`, keys: []string{"smtp.port"}, errs: []string{"config: smtp.port: want an integer, got string"}},
		{name: "not an object", raw: `[1]`, errs: []string{"config: want an object, got an array"}},
		{name: "not JSON", raw: `{"a":`, errs: []string{"config: not valid JSON"}},
		{name: "bad duration", raw: `{"window":"soon"}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig{Digits: 6}
			err := sdk.DecodeConfig(json.RawMessage(tc.raw), &c)
			if len(tc.errs) == 0 && len(tc.keys) == 0 && !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, sdk.ErrInvalidRequest) {
				t.Errorf("%v does not match ErrInvalidRequest", err)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if tc.keys != nil {
				var got []string
				var walk func(error)
				walk = func(err error) {
					if j, ok := err.(interface{ Unwrap() []error }); ok {
						for _, e := range j.Unwrap() {
							walk(e)
						}
						return
					}
					var ce *sdk.ConfigError
					if errors.As(err, &ce) {
						got = append(got, ce.Key)
					}
				}
				walk(err)
				if strings.Join(got, ",") != strings.Join(tc.keys, ",") {
					t.Errorf("keys = %v, want %v", got, tc.keys)
				}
			}
		})
	}
	if err := sdk.DecodeConfig(json.RawMessage(`{}`), testConfig{}); err == nil {
		t.Error("a non-pointer was accepted")
	}
}

func FuzzDecodeConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"issuer":"x"}`, `{"smtp":{"port":1}}`, `[`, `{"backups":[{"x":1}]}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c testConfig
		err := sdk.DecodeConfig(raw, &c)
		if err != nil && !errors.Is(err, sdk.ErrInvalidRequest) {
			t.Fatalf("error %v does not match ErrInvalidRequest", err)
		}
	})
}
