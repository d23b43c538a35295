package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
)

// The sign-in requests of `handoff bench`, through the daemon's whole
// handler (middleware, authentication, the route) with the requests the
// bench's client sends: the daemon's share of their CPU and allocations.
// The store is bolt without fsync, so the figures move with the daemon's
// code, not the disk:
//
//	go test ./daemon -run '^$' -bench Handler -benchmem -count 5
//
// The request and the recorder are built inside the loop, so their
// allocations are counted too; they are the same in every build.

// benchHandlerDaemon starts a daemon as the bench starts its own (limits
// on but out of the way, logs at warn) and returns it with its API key.
func benchHandlerDaemon(b *testing.B) (*Daemon, string) {
	b.Helper()
	cfg := config.Default()
	cfg.Data = b.TempDir()
	cfg.Limits = config.Limits{Enabled: true, SessionToken: 1 << 30, OAuth2: 1 << 30, JWT: 1 << 30, Verify: 1 << 30}
	noSync := func(ctx context.Context, cfg config.Config, log *slog.Logger) (tokenstore.Store, error) {
		return bolt.Open(cfg.StorePath(), bolt.Options{Timeout: time.Second, NoSync: true})
	}
	var notice bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := New(context.Background(), Options{Config: cfg, OpenStore: noSync, Notice: &notice, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	key := keyRE.FindString(notice.String())
	if key == "" {
		b.Fatalf("no bootstrap key in %q", notice.String())
	}
	return d, key
}

// benchHandlerUsers creates n users through the core.
func benchHandlerUsers(b *testing.B, d *Daemon, n int) []string {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		u, err := d.core.CreateUser(context.Background(), tokenstore.NewUser{ID: "bench" + strconv.Itoa(i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = u.ID
	}
	return ids
}

// serveBench sends one request through the handler and checks its status.
func serveBench(b *testing.B, h http.Handler, method, path, body string, header map[string]string, want int) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("X-Appwrite-Project", "default")
	r.Header.Set("User-Agent", "handoff-bench")
	r.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != want {
		b.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
	}
}

// BenchmarkHandlerExchange is the client's exchange (no API key, no
// Origin), each of a token minted before the timer starts. Four tokens a
// user keep every user under tokens.max_outstanding and its sessions
// under sessions.max_per_user.
func BenchmarkHandlerExchange(b *testing.B) {
	d, _ := benchHandlerDaemon(b)
	users := benchHandlerUsers(b, d, max(100, b.N/4+1))
	bodies := make([]string, b.N)
	for i := range bodies {
		u := users[i%len(users)]
		_, secret, err := d.core.Mint(context.Background(), tokenstore.MintRequest{UserID: u})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = `{"userId":"` + u + `","secret":"` + secret + `"}`
	}
	h := d.Handler()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serveBench(b, h, "POST", "/v1/account/sessions/token", bodies[i], nil, http.StatusCreated)
	}
}

// BenchmarkHandlerMint is the server's mint with the API key, for users
// in turn.
func BenchmarkHandlerMint(b *testing.B) {
	d, key := benchHandlerDaemon(b)
	users := benchHandlerUsers(b, d, 1000)
	withKey := map[string]string{"X-Appwrite-Key": key}
	h := d.Handler()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serveBench(b, h, "POST", "/v1/users/"+users[i%len(users)]+"/tokens", `{}`, withKey, http.StatusCreated)
	}
}
