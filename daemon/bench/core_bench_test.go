package bench

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// The hot paths of the token core, through d.Core() of a daemon on a
// durable bolt store in a temporary dir, and the plugin round trip through
// the daemon's HTTP handler with a real out-of-process password plugin:
//
//	go test ./daemon/bench -run '^$' -bench . -benchtime 3s -count 3
//
// The parallel benchmarks run 32 goroutines per CPU, so the store's group
// commit sees a load like the HTTP bench's 64 clients.

// benchDaemon starts a daemon for a benchmark, with the password plugin
// when withPassword.
func benchDaemon(b *testing.B, withPassword bool) *selfDaemon {
	b.Helper()
	cfg := quick("mint")
	cfg.Data = b.TempDir()
	opts := Options{Builtins: testBuiltins, OpenStore: openStore}
	if withPassword {
		opts.Executable = handoffBinary(b)
	}
	s, err := startSelf(context.Background(), cfg, opts, withPassword)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.close)
	return s
}

// benchUsers creates n users through the core.
func benchUsers(b *testing.B, core *tokenstore.Core, n int) []string {
	b.Helper()
	e := &env{core: core}
	ids, err := e.createUsers(context.Background(), n, "")
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

const benchParallelism = 32

func BenchmarkMint(b *testing.B)         { benchMint(b, benchDaemon(b, false).core(), nil) }
func BenchmarkExchange(b *testing.B)     { benchExchange(b, benchDaemon(b, false).core(), nil) }
func BenchmarkAuthenticate(b *testing.B) { benchAuthenticate(b, benchDaemon(b, false).core(), nil) }

// The bench* functions run a hot path in parallel; start, when not nil,
// runs when the timer starts (after the setup).

func benchMint(b *testing.B, core *tokenstore.Core, start func()) {
	users := benchUsers(b, core, 1000)
	var next atomic.Uint64
	b.SetParallelism(benchParallelism)
	if start != nil {
		start()
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			u := users[next.Add(1)%uint64(len(users))]
			if _, _, err := core.Mint(ctx, tokenstore.MintRequest{UserID: u}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchExchange(b *testing.B, core *tokenstore.Core, start func()) {
	users := benchUsers(b, core, max(1000, b.N/4))
	type tok struct{ user, secret string }
	toks := make([]tok, b.N)
	e := &env{core: core}
	// Random users, exchanged in the order their tokens were minted, as
	// the exchange scenario does.
	perm := rand.Perm(b.N)
	err := parallel(context.Background(), b.N, coreWorkers, "", nil, func(ctx context.Context, i int) error {
		u := users[perm[i]%len(users)]
		s, err := e.mint(ctx, u)
		toks[i] = tok{u, s}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	if start != nil {
		start()
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			t := toks[next.Add(1)-1]
			if _, _, err := core.Exchange(ctx, t.user, t.secret, tokenstore.Client{IP: "127.0.0.1"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchAuthenticate is the session lookup of every request that carries
// a session (GET /v1/account).
func benchAuthenticate(b *testing.B, core *tokenstore.Core, start func()) {
	users := benchUsers(b, core, 1000)
	creds := make([]string, len(users))
	for i, u := range users {
		_, cred, err := core.CreateSession(context.Background(), u, "bench", tokenstore.Client{})
		if err != nil {
			b.Fatal(err)
		}
		creds[i] = cred
	}
	var next atomic.Uint64
	b.SetParallelism(benchParallelism)
	if start != nil {
		start()
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, _, err := core.Authenticate(ctx, creds[next.Add(1)%uint64(len(creds))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkIssueJWT signs session JWTs (Ed25519) on one goroutine.
func BenchmarkIssueJWT(b *testing.B) {
	core := benchDaemon(b, false).core()
	u := benchUsers(b, core, 1)[0]
	s, _, err := core.CreateSession(context.Background(), u, "bench", tokenstore.Client{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := core.IssueJWT(s, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyJWT checks session JWTs (signature and live session).
func BenchmarkVerifyJWT(b *testing.B) {
	core := benchDaemon(b, false).core()
	u := benchUsers(b, core, 1)[0]
	s, _, err := core.CreateSession(context.Background(), u, "bench", tokenstore.Client{})
	if err != nil {
		b.Fatal(err)
	}
	jwt, err := core.IssueJWT(s, 0)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := core.VerifyJWT(ctx, jwt); err != nil {
			b.Fatal(err)
		}
	}
}

// serve runs one request through h and returns its status and latency.
func serve(h http.Handler, method, path, body string, hdr map[string]string) (int, time.Duration) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("X-Appwrite-Project", "default")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	t0 := time.Now()
	h.ServeHTTP(rec, req)
	return rec.Code, time.Since(t0)
}

func p50us(lat []time.Duration) float64 {
	slices.Sort(lat)
	return float64(lat[len(lat)/2]) / float64(time.Microsecond)
}

// BenchmarkPluginHop isolates the daemon-to-plugin round trip: each
// iteration sends, through the daemon's handler (no network), a verify
// that the password plugin refuses at once (no password: no hashing, no
// KV), and a verify of an unknown provider, which takes the same route
// without the plugin. The difference of their medians is the hop.
func BenchmarkPluginHop(b *testing.B) {
	h := benchDaemon(b, true).d.Handler()
	var withPlugin, without []time.Duration
	for b.Loop() {
		code, d := serve(h, "POST", "/v1/providers/password/verify", `{"username":"nobody"}`, nil)
		if code != 400 {
			b.Fatalf("verify without a password: %d, want 400 from the plugin", code)
		}
		withPlugin = append(withPlugin, d)
		code, d = serve(h, "POST", "/v1/providers/nosuch/verify", `{"username":"nobody"}`, nil)
		if code != 404 {
			b.Fatalf("verify of an unknown provider: %d, want 404", code)
		}
		without = append(without, d)
	}
	p, r := p50us(withPlugin), p50us(without)
	b.ReportMetric(p, "plugin-p50-µs")
	b.ReportMetric(r, "route-p50-µs")
	b.ReportMetric(p-r, "hop-p50-µs")
}

// BenchmarkVerify is a whole sign-in through the handler: the password
// plugin (two KV reads through the host, argon2id at DefaultArgon2KiB), the
// identity's user and a durable mint. One caller at a time.
func BenchmarkVerify(b *testing.B) {
	s := benchDaemon(b, true)
	h := s.d.Handler()
	users := benchUsers(b, s.core(), 16)
	bodies := make([]string, len(users))
	for i, u := range users {
		bodies[i] = `{"username":"bench` + strconv.Itoa(i) + `","password":"bench-password"}`
		if code, _ := serve(h, "POST", "/v1/users/"+u+"/providers/password", bodies[i], map[string]string{"X-Appwrite-Key": s.key}); code != 201 {
			b.Fatalf("enroll: %d", code)
		}
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		code, d := serve(h, "POST", "/v1/providers/password/verify", bodies[i%len(bodies)], nil)
		if code != 201 {
			b.Fatalf("verify: %d", code)
		}
		lat = append(lat, d)
		i++
	}
	b.ReportMetric(p50us(lat), "p50-µs")
}
