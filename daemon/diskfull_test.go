package daemon

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore/storetest"
)

// TestDiskFull is the attack of a full disk under a daemon on bolt: mints
// and exchanges answer 503 store_unavailable with Retry-After (not 500),
// /readyz answers 503, hundreds of failures write a few log lines (not an
// ERROR line each, onto the full disk), and once the filler is deleted
// the daemon heals by itself: /readyz 200, mint and exchange 201.
func TestDiskFull(t *testing.T) {
	dir := storetest.MountTmpfs(t, 1<<20)
	var logs lockedBuffer
	testLogger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newTestServer(t, func(c *config.Config) { c.Data = dir })
	s.createUser("u1", "u1@example.com")
	s.login("u1")
	if r := s.do(req{method: "GET", path: "/readyz"}); r.status != 200 {
		t.Fatalf("readyz before: %d %s", r.status, r.body)
	}
	filler := filepath.Join(dir, "filler")
	storetest.FillDisk(t, filler)

	const tries = 300
	failed, other := 0, 0
	for range tries {
		r := s.do(req{method: "POST", path: "/v1/users/u1/tokens", key: true})
		if r.status == 201 {
			secret := r.json(t)["secret"].(string)
			r = s.do(req{method: "POST", path: "/v1/account/sessions/token", key: true, body: map[string]any{"userId": "u1", "secret": secret}})
		}
		switch r.status {
		case 201:
		case 503:
			wantError(t, r, 503, "store_unavailable")
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("503 without Retry-After: %v", r.header)
			}
			failed++
		default:
			other++
			t.Errorf("on a full disk: %d %s", r.status, r.body)
		}
	}
	if failed < tries/2 || other > 0 {
		t.Fatalf("on a full disk: %d of %d sign-ins answered 503, %d something else", failed, tries, other)
	}
	if r := s.do(req{method: "GET", path: "/readyz"}); r.status != 503 {
		t.Fatalf("readyz on a full disk: %d %s", r.status, r.body)
	}
	loud := loudLines(t, logs.String())
	t.Logf("%d of %d sign-ins answered 503; warn/error lines:\n%s", failed, tries, strings.Join(loud, "\n"))
	// One "store unavailable" per 10 s and readyz's "not ready": 2 lines
	// here; 5 leaves room for a slow machine. The old code wrote one
	// ERROR line per failure.
	if len(loud) > 5 {
		t.Fatalf("%d failures wrote %d warn/error lines, want at most 5:\n%s", failed, len(loud), strings.Join(loud, "\n"))
	} else if len(loud) == 0 || !strings.Contains(strings.Join(loud, "\n"), "store unavailable") {
		t.Fatalf("no store unavailable line for %d failures: %q", failed, loud)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.do(req{method: "GET", path: "/readyz"})
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after space returned: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.login("u1") // mint and exchange answer 201
}

// loudLines returns the log lines at WARN or above.
func loudLines(t *testing.T, logs string) []string {
	t.Helper()
	var loud []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Level string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line.Level == "WARN" || line.Level == "ERROR" {
			loud = append(loud, sc.Text())
		}
	}
	return loud
}
