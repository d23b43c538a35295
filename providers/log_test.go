package providers

import (
	"encoding/json"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStringLogKeys(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"text", `plain text`, `plain text`},
		{"hclog", `{"@level":"info","@message":"hi","n":1}`, `{"@level":"info","@message":"hi","n":1}`},
		{"number message", `{"@level":"info","@message":1}`, `{"@level":"info","@message":"1"}`},
		{"null message", `{"@message":null}`, `{"@message":"null"}`},
		{"object level", `{"@level":{"x":1},"@message":"m"}`, `{"@level":"{\"x\":1}","@message":"m"}`},
		{"number timestamp", `{"@message":"m","@timestamp":17}`, `{"@message":"m","@timestamp":"17"}`},
		{"not json", `{"@message":`, `{"@message":`},
		{"array", `[1,2]`, `[1,2]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(stringLogKeys([]byte(tc.in))); got != tc.want {
				t.Errorf("stringLogKeys(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestPluginLogLinesCannotCrashHost: go-plugin v1.8.0 panics on an hclog
// line whose @message or @level is not a string; a plugin (in any
// language) writing one must be logged, not crash the daemon. Without
// guardLogLines this test kills the test binary.
func TestPluginLogLinesCannotCrashHost(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var recs []string
	h, err := newHost(t, Options{Logger: slog.New(recordHandler{mu: &mu, recs: &recs})})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", logLineMax+10)
	script := `echo '{"@level":"warn","@message":42}' >&2; echo '{"@message":null,"@level":7}' >&2; echo '` + long + `' >&2; echo '{"@level":"error","@message":"after"}' >&2`
	_, err = h.Spawn(Spec{Name: "badlog", External: &External{Path: sh, SHA256: sha256File(t, sh), Args: []string{"-c", script}}})
	if err == nil {
		t.Fatal("a shell script passed the handshake")
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if t.Failed() {
				t.Log(r[:min(len(r), 120)])
			}
		}
	})
	// A level go-plugin does not know makes it log the whole line at debug.
	want := []string{"WARN 42 ", `DEBUG {"@level":"7","@message":"null"} `, "ERROR after "}
	waitFor(t, 2*time.Second, "the plugin's log lines", func() bool {
		mu.Lock()
		defer mu.Unlock()
		all := strings.Join(recs, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return true
	})
}

// FuzzStringLogKeys: whatever a plugin writes, a line that is a JSON
// object leaves stringLogKeys with string hclog keys, which go-plugin
// type-asserts.
func FuzzStringLogKeys(f *testing.F) {
	for _, s := range []string{`{"@message":1}`, `{"@level":null,"@message":[1]}`, `{"@timestamp":{}}`, `{"@message":"ok"}`, `text`, ` {"@message":true} `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		out := stringLogKeys([]byte(line))
		var obj map[string]any
		if json.Unmarshal(out, &obj) != nil {
			return
		}
		for _, k := range hclogStrings {
			if v, ok := obj[k]; ok {
				if _, isString := v.(string); !isString {
					t.Fatalf("stringLogKeys(%q) = %s: %s is %T", line, out, k, v)
				}
			}
		}
	})
}
