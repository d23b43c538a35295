package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/postgres"
)

// Several real handoff processes on one PostgreSQL database, as behind a
// load balancer with no stickiness: whatever one replica writes (users,
// tokens, sessions, API keys, the pepper, signing keys) every other one
// serves, and a one-time secret is exchanged once across all of them.

const pgDSNEnv = "HANDOFF_TEST_POSTGRES_DSN"

// replicaConfig turns the route limits off: the race below sends 64
// exchanges from one IP for one user, past Appwrite's 10 an hour.
const replicaConfig = `
store:
  driver: postgres
limits:
  enabled: false
`

// pgSchema returns a DSN whose search_path is a schema of the test's own,
// dropped with everything in it when the test ends. Without a DSN, or with
// a server that does not answer, the test skips, except under CI=true,
// where it fails.
func pgSchema(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(pgDSNEnv)
	if dsn == "" {
		requireTool(t, false, "a PostgreSQL server in "+pgDSNEnv+" (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		requireTool(t, false, fmt.Sprintf("a reachable PostgreSQL server at %s (%v)", pgDSNEnv, err))
	}
	conn.Close(ctx)
	_, schemaDSN, drop, err := postgres.TempSchema(ctx, dsn, "handoff_e2e_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return schemaDSN
}

// cluster is n handoff processes on one schema. key is the API key the
// first one printed at its first start; the others find it in the shared
// database and print none.
type cluster struct {
	dsn      string
	keyEnv   string // HANDOFF_SECRETS__KEY_FILE=<the key file all replicas share>
	replicas []*daemon
	key      string
	client   *http.Client
}

// secretsKeyEnv writes a new secrets key file and returns the env entry
// that points a daemon at it: PostgreSQL requires one, and replicas share it.
func secretsKeyEnv(t *testing.T) string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, []byte(tokenstore.NewSecretKeyLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	return "HANDOFF_SECRETS__KEY_FILE=" + keyFile
}

func startCluster(t *testing.T, n int, cfg string) *cluster {
	t.Helper()
	c := &cluster{dsn: pgSchema(t), keyEnv: secretsKeyEnv(t)}
	for i := range n {
		// Started one after the other: the first creates the schema's
		// tables, the pepper, the signing key and the bootstrap key.
		d := startDaemon(t, cfg, "HANDOFF_STORE__DSN="+c.dsn, c.keyEnv)
		if i == 0 {
			c.key = d.Key
		} else if d.Key != "" {
			t.Fatalf("replica %d printed a bootstrap key of its own; the keys must be shared", i)
		}
		c.replicas = append(c.replicas, d)
	}
	if c.key == "" {
		t.Fatal("the first replica printed no API key")
	}
	c.client = &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute},
	}
	t.Cleanup(c.client.CloseIdleConnections)
	return c
}

// reply is one answer of a replica.
type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func (r reply) str(k string) string { s, _ := r.body[k].(string); return s }

// call sends a JSON request to d (see send). A transport error is
// returned, not fatal: the kill test expects them from the killed replica.
func (c *cluster) call(d *daemon, method, path string, hdr map[string]string, body any) (reply, error) {
	resp, out, err := send(c.client, method, d.URL+path, hdr, body)
	if resp == nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: out}, err
}

// must is call for requests that must get an answer with status want.
func (c *cluster) must(t *testing.T, d *daemon, want int, method, path string, hdr map[string]string, body any) reply {
	t.Helper()
	r, err := c.call(d, method, path, hdr, body)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, d.URL, path, err)
	}
	if r.status != want {
		t.Fatalf("%s %s%s: %d %v, want %d", method, d.URL, path, r.status, r.body, want)
	}
	return r
}

func (c *cluster) keyHdr() map[string]string { return map[string]string{"X-Appwrite-Key": c.key} }

func (c *cluster) createUser(t *testing.T, d *daemon, id string) {
	t.Helper()
	c.must(t, d, http.StatusCreated, "POST", "/v1/users", c.keyHdr(), map[string]any{"userId": id, "email": id + "@example.com"})
}

// mint asks d for a token of user; the long secret keeps the many tokens
// of one user in the kill test from colliding.
func (c *cluster) mint(d *daemon, user string) (string, reply, error) {
	r, err := c.call(d, "POST", "/v1/users/"+user+"/tokens", c.keyHdr(), map[string]any{"length": 32})
	return r.str("secret"), r, err
}

// exchange is the client's POST /v1/account/sessions/token, without a key.
func (c *cluster) exchange(d *daemon, user, secret string) (reply, error) {
	return c.call(d, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": user, "secret": secret})
}

// credential is the session credential of a successful client exchange,
// from X-Fallback-Cookies (sent to a caller with no Origin).
func credential(t *testing.T, r reply) string {
	t.Helper()
	var fb map[string]string
	if err := json.Unmarshal([]byte(r.header.Get("X-Fallback-Cookies")), &fb); err != nil || fb["a_session_default"] == "" {
		t.Fatalf("exchange answer has no X-Fallback-Cookies credential: %q", r.header.Get("X-Fallback-Cookies"))
	}
	return fb["a_session_default"]
}

func TestReplicaExchangeAcrossReplicas(t *testing.T) {
	c := startCluster(t, 3, replicaConfig)
	a, b, third := c.replicas[0], c.replicas[1], c.replicas[2]

	// The first replica's key works on the others.
	c.createUser(t, b, "alice")
	c.must(t, third, http.StatusOK, "GET", "/v1/users/alice", c.keyHdr(), nil)

	// Minted through A, exchanged through B; a session made through B
	// authenticates on every replica.
	secret, r, err := c.mint(a, "alice")
	if err != nil || r.status != http.StatusCreated || secret == "" {
		t.Fatalf("mint through A: %v %d %v", err, r.status, r.body)
	}
	r = c.must(t, b, http.StatusCreated, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": "alice", "secret": secret})
	cred := credential(t, r)
	for i, d := range c.replicas {
		acct := c.must(t, d, http.StatusOK, "GET", "/v1/account", map[string]string{"X-Appwrite-Session": cred}, nil)
		if acct.str("$id") != "alice" {
			t.Fatalf("GET /v1/account on replica %d: %v", i, acct.body)
		}
	}
	// Used once through B, it is used on every replica.
	for i, d := range c.replicas {
		r = c.must(t, d, http.StatusUnauthorized, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": "alice", "secret": secret})
		if r.str("type") != "user_invalid_token" {
			t.Fatalf("second exchange on replica %d: %v", i, r.body)
		}
	}
	// A session deleted through one replica is gone on the others.
	c.must(t, third, http.StatusNoContent, "DELETE", "/v1/account/sessions/current", map[string]string{"X-Appwrite-Session": cred}, nil)
	c.must(t, a, http.StatusUnauthorized, "GET", "/v1/account", map[string]string{"X-Appwrite-Session": cred}, nil)

	// 64 concurrent exchanges of one secret, spread over the replicas:
	// exactly one session, 63 user_invalid_token, every round.
	const rounds, racers = 100, 64
	for round := range rounds {
		user := fmt.Sprintf("race%03d", round)
		c.createUser(t, c.replicas[round%3], user)
		secret, r, err := c.mint(c.replicas[(round+1)%3], user)
		if err != nil || r.status != http.StatusCreated {
			t.Fatalf("round %d: mint: %v %d %v", round, err, r.status, r.body)
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			won     int
			refused int
			other   []string
		)
		for i := range racers {
			wg.Go(func() {
				<-start
				r, err := c.exchange(c.replicas[i%3], user, secret)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					other = append(other, err.Error())
				case r.status == http.StatusCreated:
					won++
				case r.status == http.StatusUnauthorized && r.str("type") == "user_invalid_token":
					refused++
				default:
					other = append(other, fmt.Sprintf("%d %v", r.status, r.body))
				}
			})
		}
		close(start)
		wg.Wait()
		if won != 1 || refused != racers-1 || len(other) > 0 {
			t.Fatalf("round %d: %d sessions, %d user_invalid_token, others %q; want 1 and %d", round, won, refused, other, racers-1)
		}
	}
}

// jwks fetches d's key set as kid -> public key.
func (c *cluster) jwks(t *testing.T, d *daemon) map[string]ed25519.PublicKey {
	t.Helper()
	resp, err := c.client.Get(d.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("jwks of %s: %v", d.URL, err)
	}
	out := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || k.Kty != "OKP" || k.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			t.Fatalf("jwks of %s: bad key %+v", d.URL, k)
		}
		out[k.Kid] = ed25519.PublicKey(x)
	}
	return out
}

// verifyJWT checks jwt's EdDSA signature against set, as a downstream
// service would, and returns its kid.
func verifyJWT(t *testing.T, jwt string, set map[string]ed25519.PublicKey) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	var head struct{ Alg, Kid string }
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(raw, &head); err != nil || head.Alg != "EdDSA" {
		t.Fatalf("JWT header %s: %v", raw, err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	pub, ok := set[head.Kid]
	if !ok {
		t.Fatalf("kid %s is not in the key set (%d keys)", head.Kid, len(set))
	}
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("JWT signed with %s does not verify", head.Kid)
	}
	return head.Kid
}

func TestReplicaJWTAndKeyRotation(t *testing.T) {
	c := startCluster(t, 3, replicaConfig)
	a, b := c.replicas[0], c.replicas[1]
	c.createUser(t, a, "bob")
	secret, r, err := c.mint(a, "bob")
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("mint: %v %d %v", err, r.status, r.body)
	}
	cred := credential(t, c.must(t, b, http.StatusCreated, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": "bob", "secret": secret}))
	session := map[string]string{"X-Appwrite-Session": cred}

	// Signed by A, verified against every replica's JWKS and accepted by
	// every replica.
	jwt := c.must(t, a, http.StatusCreated, "POST", "/v1/account/jwts", session, nil).str("jwt")
	var oldKid string
	for i, d := range c.replicas {
		kid := verifyJWT(t, jwt, c.jwks(t, d))
		if i == 0 {
			oldKid = kid
		}
		if got := c.must(t, d, http.StatusOK, "GET", "/v1/account", map[string]string{"X-Appwrite-JWT": jwt}, nil).str("$id"); got != "bob" {
			t.Fatalf("GET /v1/account with the JWT on replica %d: %q", i, got)
		}
	}
	if len(c.jwks(t, b)) != 1 {
		t.Fatalf("replicas made signing keys of their own: %v", c.jwks(t, b))
	}

	// Rotate with the CLI on the same database, as an operator would.
	cmd := exec.Command(handoffBinary(t), "keys", "rotate-signing", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "HANDOFF_STORE__DRIVER=postgres", "HANDOFF_STORE__DSN="+c.dsn, c.keyEnv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("handoff keys rotate-signing: %v\n%s", err, out)
	}
	newKid, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "new signing key ")
	if !ok || newKid == oldKid {
		t.Fatalf("handoff keys rotate-signing said %q", out)
	}

	// Every replica publishes the new key (JWKS reads the store at most
	// once a second) and keeps the old one; the old JWT still verifies
	// everywhere.
	for i, d := range c.replicas {
		deadline := time.Now().Add(5 * time.Second)
		set := c.jwks(t, d)
		for set[newKid] == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			set = c.jwks(t, d)
		}
		if set[newKid] == nil {
			t.Fatalf("replica %d does not publish the new key %s after rotation: %v", i, newKid, set)
		}
		if set[oldKid] == nil {
			t.Fatalf("replica %d dropped the old key %s at rotation", i, oldKid)
		}
		verifyJWT(t, jwt, set)
		c.must(t, d, http.StatusOK, "GET", "/v1/account", map[string]string{"X-Appwrite-JWT": jwt}, nil)
	}
	// A JWT issued now (by a replica that may still sign with the old key
	// until its periodic reload, or already with the new one) verifies
	// against every replica's set and on every replica.
	jwt2 := c.must(t, b, http.StatusCreated, "POST", "/v1/account/jwts", session, nil).str("jwt")
	for _, d := range c.replicas {
		verifyJWT(t, jwt2, c.jwks(t, d))
		c.must(t, d, http.StatusOK, "GET", "/v1/account", map[string]string{"X-Appwrite-JWT": jwt2}, nil)
	}
	// A JWT dies with its session, on every replica.
	c.must(t, a, http.StatusNoContent, "DELETE", "/v1/account/sessions/current", session, nil)
	for _, d := range c.replicas {
		c.must(t, d, http.StatusUnauthorized, "GET", "/v1/account", map[string]string{"X-Appwrite-JWT": jwt}, nil)
	}
}

// kill ends d with SIGKILL: no shutdown, connections to PostgreSQL cut
// mid-transaction.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait() // "signal: killed"; sets ProcessState, so cleanup skips it
}

// minted is a token whose mint was acknowledged with a 201.
type minted struct {
	user, secret string
	// state: 0 not exchanged yet, 1 exchanged with a 201, 2 exchange
	// sent without an answer (the killed replica may have committed it).
	state int
}

func TestReplicaKilledUnderLoad(t *testing.T) {
	// Half the tokens are kept for the check at the end, up to keepPerUser
	// a user: tokens.max_outstanding would evict any beyond it.
	c := startCluster(t, 3, replicaConfig+"tokens:\n  max_outstanding: 100\n")
	const users, workers, keepPerUser = 16, 24, 40
	kept := map[string]int{}
	for i := range users {
		c.createUser(t, c.replicas[i%3], fmt.Sprintf("load%02d", i))
	}
	victim := c.replicas[2]
	var (
		dead      atomic.Bool
		mu        sync.Mutex
		tokens    []*minted
		survivor5 []string // 5xx or unexpected answers from the survivors
		afterKill atomic.Int64
		perRep    [3]atomic.Int64
	)
	alive := func(i int) int { // replica index to use for the i-th pick
		if dead.Load() {
			return i % 2
		}
		return i % 3
	}
	bad := func(idx int, what string, r reply) {
		if idx == 2 {
			return // the victim may answer anything as it dies
		}
		mu.Lock()
		survivor5 = append(survivor5, fmt.Sprintf("replica %d %s: %d %v", idx, what, r.status, r.body))
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			user := fmt.Sprintf("load%02d", w%users)
			for n := w; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				mi := alive(n)
				secret, r, err := c.mint(c.replicas[mi], user)
				if err != nil {
					if mi != 2 {
						bad(mi, "mint: "+err.Error(), r)
					}
					continue // not acknowledged
				}
				if r.status != http.StatusCreated {
					bad(mi, "mint", r)
					continue
				}
				tok := &minted{user: user, secret: secret}
				perRep[mi].Add(1)
				if dead.Load() && mi != 2 {
					afterKill.Add(1)
				}
				mu.Lock()
				tokens = append(tokens, tok)
				keep := n%2 == 0 && kept[user] < keepPerUser
				if keep {
					kept[user]++
				}
				mu.Unlock()
				if keep {
					continue // kept for the check at the end
				}
				xi := alive(n + 1) // another replica than the minting one
				r, err = c.exchange(c.replicas[xi], user, secret)
				mu.Lock()
				switch {
				case err != nil && xi == 2:
					tok.state = 2
				case err != nil:
					survivor5 = append(survivor5, fmt.Sprintf("replica %d exchange: %v", xi, err))
				case r.status == http.StatusCreated:
					tok.state = 1
				case xi == 2 && r.status >= 500:
					tok.state = 2 // the victim failed mid-request
				default:
					survivor5 = append(survivor5, fmt.Sprintf("replica %d exchange of a fresh token: %d %v", xi, r.status, r.body))
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	victim.kill(t)
	dead.Store(true)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	if len(survivor5) > 0 {
		t.Errorf("the surviving replicas failed %d requests, e.g. %q", len(survivor5), survivor5[:min(5, len(survivor5))])
	}
	for i := range 2 {
		waitReady(t, c.replicas[i].URL)
	}
	if perRep[2].Load() == 0 || afterKill.Load() == 0 {
		t.Fatalf("load did not reach every replica: minted per replica %d/%d/%d, after the kill %d",
			perRep[0].Load(), perRep[1].Load(), perRep[2].Load(), afterKill.Load())
	}
	t.Logf("%d tokens acknowledged (per replica %d/%d/%d, %d after the kill)",
		len(tokens), perRep[0].Load(), perRep[1].Load(), perRep[2].Load(), afterKill.Load())

	// No acknowledged token is lost: every one not exchanged yet is
	// exchanged now, once, on a survivor. One whose exchange went to the
	// victim unanswered may have been used; it must not be usable twice.
	var (
		pending, ambiguous, checkedTwice int
		used                             []*minted
	)
	for i, tok := range tokens {
		if tok.state == 1 {
			used = append(used, tok)
			continue
		}
		r, err := c.exchange(c.replicas[i%2], tok.user, tok.secret)
		if err != nil {
			t.Fatalf("exchange on a survivor: %v", err)
		}
		switch {
		case r.status == http.StatusCreated:
			used = append(used, tok)
		case tok.state == 2 && r.status == http.StatusUnauthorized:
			ambiguous++ // the victim committed it before it died
		default:
			t.Errorf("acknowledged token of %s (state %d) lost: %d %v", tok.user, tok.state, r.status, r.body)
		}
		pending++
	}
	// ... and every used one is refused now, on both survivors (checked
	// after all the 201s above: refusals count towards max_attempts,
	// which burns the user's outstanding tokens).
	for i, tok := range used {
		if i%7 != 0 {
			continue
		}
		r, err := c.exchange(c.replicas[i%2], tok.user, tok.secret)
		if err != nil || r.status != http.StatusUnauthorized || r.str("type") != "user_invalid_token" {
			t.Errorf("a used token of %s exchanged again: %v %d %v", tok.user, err, r.status, r.body)
		}
		checkedTwice++
	}
	t.Logf("%d exchanged under load, %d exchanged after (%d unanswered by the victim and used there), %d re-exchanges refused",
		len(tokens)-pending, pending-ambiguous, ambiguous, checkedTwice)
}

// TestReplicaRateLimitsShared: Appwrite's route limit on exchanges (10 an
// hour per IP and user) is counted in the database, so a client that
// spreads its guesses over the replicas gets 10 in all, not 10 each.
func TestReplicaRateLimitsShared(t *testing.T) {
	c := startCluster(t, 3, "store:\n  driver: postgres\n")
	c.createUser(t, c.replicas[0], "bob")
	secret, r, err := c.mint(c.replicas[1], "bob")
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("mint: %v %d %v", err, r.status, r.body)
	}
	for i := range 10 {
		d := c.replicas[i%3]
		r := c.must(t, d, http.StatusUnauthorized, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": "bob", "secret": fmt.Sprintf("%032x", i)})
		if got, want := r.header.Get("X-RateLimit-Remaining"), fmt.Sprint(9-i); got != want {
			t.Fatalf("guess %d on replica %d: X-RateLimit-Remaining %s, want %s", i+1, i%3, got, want)
		}
	}
	// The eleventh try, with the right secret, on any replica: refused.
	for i, d := range c.replicas {
		r := c.must(t, d, http.StatusTooManyRequests, "POST", "/v1/account/sessions/token", nil, map[string]any{"userId": "bob", "secret": secret})
		if r.str("type") != "general_rate_limit_exceeded" {
			t.Fatalf("replica %d: %v", i, r.body)
		}
	}
	// An API key caller is exempt, as in Appwrite; but the ten wrong
	// guesses also reached tokens.max_attempts, which burned the token.
	r = c.must(t, c.replicas[2], http.StatusUnauthorized, "POST", "/v1/account/sessions/token", c.keyHdr(), map[string]any{"userId": "bob", "secret": secret})
	if r.str("type") != "user_invalid_token" {
		t.Fatalf("key caller after the burn: %v", r.body)
	}
}
