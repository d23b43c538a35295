package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPasswordLockoutUnderParallelGuesses is the attack of issue 9 §2
// through the real daemon, its host KV and each store: with
// lockout.attempts 5, 40 wrong guesses at once, then the right password
// while they are in flight. The password plugin runs as an external
// plugin with a probe (testdata/lockoutprobe) that holds every compare
// until the test opens it and counts them. Before the fix all 41 reached
// the compare and the right password got a token; now at most 5 compare
// and none signs in.
func TestPasswordLockoutUnderParallelGuesses(t *testing.T) {
	probe, sum := buildPlugin(t, "./testdata/lockoutprobe")
	for _, store := range []string{"bolt", "postgres"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			cfg := fmt.Sprintf(`
limits:
  enabled: false
providers:
  - name: password
    plugin: {path: %q, sha256: %q, env: {PROBE_DIR: %q}}
    config: {insecure_fast: true, argon2: {memory: 64, time: 1, threads: 1}, lockout: {attempts: 5, duration: 1h}}
    users: {create: false}
    deliver: {via: response}
    timeout: 20s
`, probe, sum, dir)
			var d *daemon
			if store == "postgres" {
				d = startDaemon(t, "store:\n  driver: postgres\n"+cfg, "HANDOFF_STORE__DSN="+pgSchema(t), secretsKeyEnv(t))
			} else {
				d = startDaemon(t, cfg)
			}
			attackLockout(t, d, dir)
		})
	}
}

func attackLockout(t *testing.T, d *daemon, dir string) {
	const guesses, attempts = 40, 5
	open := filepath.Join(dir, "open")
	compares := func() int {
		raw, _ := os.ReadFile(filepath.Join(dir, "compares"))
		return bytes.Count(raw, []byte("\n"))
	}
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	status, user := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "name": "Alice"})
	want(t, "create user", status, http.StatusCreated, user)
	userID, _ := user["$id"].(string)
	status, enrolled := call(t, d, "POST", "/v1/users/"+userID+"/providers/password", d.Key, "", map[string]any{"username": "alice", "password": "correct horse battery"})
	want(t, "enroll", status, http.StatusCreated, enrolled)
	if err := os.Remove(open); err != nil { // from now on, compares wait
		t.Fatal(err)
	}
	before := compares()

	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: guesses + 1}}
	defer client.CloseIdleConnections()
	var (
		wg       sync.WaitGroup
		returned atomic.Int32
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	verify := func(password string) *int {
		var got int
		wg.Go(func() {
			defer returned.Add(1)
			resp, body, err := send(client, "POST", d.URL+"/v1/providers/password/verify", nil, map[string]any{"username": "alice", "password": password})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			got = resp.StatusCode
			mu.Unlock()
			if resp.StatusCode == http.StatusCreated {
				t.Errorf("%q signed in: %v", password, body)
			}
		})
		return &got
	}
	// settle waits until n requests are held at a compare or answered.
	settle := func(n int) {
		for deadline := time.Now().Add(20 * time.Second); int(returned.Load())+compares()-before < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d answered, %d held; want %d", returned.Load(), compares()-before, n)
			}
		}
	}
	for range guesses {
		verify("wrong horse battery")
	}
	settle(guesses)
	right := verify("correct horse battery")
	settle(guesses + 1)
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if *right != http.StatusUnauthorized {
		t.Errorf("the right password, sent last: %d, want 401", *right)
	}
	if statuses[http.StatusUnauthorized] != guesses+1 {
		t.Errorf("answers %v, want %d × 401", statuses, guesses+1)
	}
	if n := compares() - before; n > attempts {
		t.Errorf("%d compares, want at most lockout.attempts (%d)", n, attempts)
	}
	// The lock holds afterwards too.
	status, body := call(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": "correct horse battery"})
	want(t, "the right password after the burst", status, http.StatusUnauthorized, body)
}
