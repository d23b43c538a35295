//go:build unix

package e2e

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnSIGHUP is the operator's reload: edit the config file, send
// SIGHUP, and the daemon adds the new provider; a change that needs a
// restart, and a file that does not parse, are refused with a log line and
// change nothing.
func TestReloadOnSIGHUP(t *testing.T) {
	const one = `
providers:
  - name: pw1
    kind: password
`
	d := startDaemon(t, one)
	path := d.cmd.Args[slices.Index(d.cmd.Args, "--config")+1]
	hup := func(cfg, logLine string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(d.logs.String(), logLine) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP", logLine)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	names := func() []string {
		t.Helper()
		status, body := call(t, d, "GET", "/v1/providers", "", "", nil)
		want(t, "list providers", status, http.StatusOK, body)
		var out []string
		for _, p := range body["providers"].([]any) {
			out = append(out, p.(map[string]any)["name"].(string))
		}
		return out
	}

	hup(one+`  - name: pw2
    kind: password
`, `msg="config reloaded" added=[pw2]`)
	if got := names(); !slices.Equal(got, []string{"pw1", "pw2"}) {
		t.Fatalf("providers after the reload: %v", got)
	}

	hup("project: other\n"+one+`  - name: pw3
    kind: password
`, `msg="config reload refused: these keys change only with a restart; serving the config as it was" keys=project`)
	hup("providers: [\n", `msg="config reload refused: the config does not load; serving the config as it was"`)
	if got := names(); !slices.Equal(got, []string{"pw1", "pw2"}) {
		t.Fatalf("providers after refused reloads: %v", got)
	}
	waitReady(t, d.URL)
	for _, l := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(l, "reload") || strings.Contains(l, "SIGHUP") {
			t.Log(l)
		}
	}
}
