package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// scenario is a prepared load: op is one client operation, made of the
// named steps (each a request whose latency op writes into steps).
type scenario struct {
	name  string
	steps []string
	op    func(ctx context.Context, steps []time.Duration) error
	// pool is the number of tokens minted ahead (exchange only).
	pool  int
	notes []string
}

// errPoolEmpty ends a client: the tokens minted ahead are used up.
var errPoolEmpty = errors.New("the tokens minted ahead are used up")

// timed sends r, stores its latency in *lat and fails on a status other
// than want; on success it returns the body.
func (e *env) timed(ctx context.Context, step string, r call, want int, lat *time.Duration) ([]byte, error) {
	t0 := time.Now()
	status, body, err := e.api.do(ctx, r)
	*lat = time.Since(t0)
	if err != nil {
		return nil, &statusError{Step: step, Body: err.Error()}
	}
	if status != want {
		return nil, &statusError{Step: step, Status: status, Body: truncate(string(body), 300)}
	}
	return body, nil
}

// exchangeBody is the body of POST /v1/account/sessions/token. User ids
// and hex secrets need no JSON escaping.
func exchangeBody(userID, secret string) []byte {
	return []byte(`{"userId":"` + userID + `","secret":"` + secret + `"}`)
}

// exchangeCall is the client's exchange: no API key, as an app's client
// SDK sends it.
func exchangeCall(userID, secret string) call {
	return call{method: "POST", path: "/v1/account/sessions/token", body: exchangeBody(userID, secret)}
}

// shuffled returns a copy of s in random order: the scenarios take users
// in turn, and users in creation order have neighbouring keys (ids are
// time-ordered), which would flatter the store.
func shuffled(s []string) []string {
	out := slices.Clone(s)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// setup prepares the configured scenario.
func (e *env) setup(ctx context.Context) (*scenario, error) {
	switch e.cfg.Scenario {
	case "mint":
		return e.setupMint(ctx)
	case "exchange":
		return e.setupExchange(ctx)
	case "account":
		return e.setupAccount(ctx)
	case "flow":
		return e.setupFlow(ctx)
	case "pairs":
		return e.setupPairs(ctx)
	}
	return nil, fmt.Errorf("bench: unknown scenario %q", e.cfg.Scenario)
}

// usersInTurn returns the users a scenario takes in turn, in random
// order: the preloaded ones when there are enough, else new ones; and a
// note saying which, naming what the scenario makes for them.
func (e *env) usersInTurn(ctx context.Context, what string) ([]string, []string, error) {
	n := max(1000, 16*e.cfg.Clients)
	if users := e.sampleUsers; len(users) >= n {
		note := fmt.Sprintf("%s for %s preloaded users, spread over the store", what, thousands(int64(len(users))))
		return shuffled(users), []string{note}, nil
	}
	users, err := e.createUsers(ctx, n, "users")
	return shuffled(users), nil, err
}

// setupMint: the server mints tokens (POST /v1/users/{id}/tokens with the
// API key) for users in turn.
func (e *env) setupMint(ctx context.Context) (*scenario, error) {
	users, notes, err := e.usersInTurn(ctx, "mints")
	if err != nil {
		return nil, err
	}
	var next atomic.Uint64
	return &scenario{name: "mint", steps: []string{"mint"}, notes: notes, op: func(ctx context.Context, steps []time.Duration) error {
		u := users[next.Add(1)%uint64(len(users))]
		_, err := e.timed(ctx, "mint", call{method: "POST", path: "/v1/users/" + u + "/tokens", body: []byte(`{}`), withKey: true}, 201, &steps[0])
		return err
	}}, nil
}

// setupPairs: the server mints a token for a user (POST
// /v1/users/{id}/tokens with the API key) and the client exchanges it at
// once, one operation: what a sign-in costs the server, without a plugin.
// Users are taken in turn, preloaded ones when there are enough.
func (e *env) setupPairs(ctx context.Context) (*scenario, error) {
	users, notes, err := e.usersInTurn(ctx, "pairs")
	if err != nil {
		return nil, err
	}
	var next atomic.Uint64
	return &scenario{name: "pairs", steps: []string{"mint", "exchange"}, notes: notes, op: func(ctx context.Context, steps []time.Duration) error {
		u := users[next.Add(1)%uint64(len(users))]
		body, err := e.timed(ctx, "mint", call{method: "POST", path: "/v1/users/" + u + "/tokens", body: []byte(`{}`), withKey: true}, 201, &steps[0])
		if err != nil {
			return err
		}
		var t struct {
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(body, &t); err != nil || t.Secret == "" {
			return &statusError{Step: "mint", Status: 201, Body: "no secret in the answer"}
		}
		_, err = e.timed(ctx, "exchange", exchangeCall(u, t.Secret), 201, &steps[1])
		return err
	}}, nil
}

// setupExchange mints a pool of tokens ahead (not measured); the load is
// their exchange for sessions, as a client SDK does it.
func (e *env) setupExchange(ctx context.Context) (*scenario, error) {
	pool := e.cfg.Pool
	if pool == 0 {
		pool = int(10000 * (e.cfg.Warmup + e.cfg.Duration).Seconds())
		pool = max(pool, 2000)
	}
	// At most four tokens per user, so a user's exchanges stay under the
	// default limit of 10 an hour; preloaded users when there are enough,
	// so the sessions land all over a large store.
	users := e.sampleUsers
	var notes []string
	if len(users) >= (pool+3)/4 {
		notes = append(notes, fmt.Sprintf("the tokens belong to %s preloaded users, spread over the store", thousands(int64(len(users)))))
	} else {
		var err error
		if users, err = e.createUsers(ctx, (pool+3)/4, "users"); err != nil {
			return nil, err
		}
	}
	type token struct {
		user   int32
		secret string
	}
	toks := make([]token, pool)
	// Users sign in in no particular order, each soon after its token was
	// minted: token i goes to a random user (ids are time-ordered, so
	// users in creation order would put concurrent exchanges on
	// neighbouring keys), and tokens are exchanged in the order they were
	// minted.
	perm := rand.Perm(pool)
	fmt.Fprintf(e.progress, "minting %s tokens ahead (not measured)\n", thousands(int64(pool)))
	err := parallel(ctx, pool, e.workers(), "mint ahead", e.progress, func(ctx context.Context, i int) error {
		u := perm[i] % len(users)
		secret, err := e.mint(ctx, users[u])
		toks[i] = token{int32(u), secret}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Two tokens of one user with the same secret (6 hex characters: one
	// chance in 16.7 million a pair) are one token: the later replaced
	// the earlier, as tokenstore documents. Keep one of them.
	seen := make(map[token]bool, len(toks))
	kept := toks[:0]
	for _, t := range toks {
		if !seen[t] {
			seen[t] = true
			kept = append(kept, t)
		}
	}
	if dup := len(toks) - len(kept); dup > 0 {
		notes = append(notes, fmt.Sprintf("%d of the tokens minted ahead repeated a secret of the same user and were left out", dup))
	}
	toks = kept
	var next atomic.Int64
	return &scenario{name: "exchange", steps: []string{"exchange"}, pool: pool, notes: notes, op: func(ctx context.Context, steps []time.Duration) error {
		i := next.Add(1) - 1
		if i >= int64(len(toks)) {
			return errPoolEmpty
		}
		t := toks[i]
		_, err := e.timed(ctx, "exchange", exchangeCall(users[t.user], t.secret), 201, &steps[0])
		return err
	}}, nil
}

// setupAccount opens sessions ahead; the load is GET /v1/account with
// them, each request a session lookup.
func (e *env) setupAccount(ctx context.Context) (*scenario, error) {
	n := max(1000, 16*e.cfg.Clients)
	creds := e.sampleCreds
	var notes []string
	if len(creds) >= n {
		notes = append(notes, fmt.Sprintf("looks up %s preloaded sessions, spread over the store", thousands(int64(len(creds)))))
	} else {
		users, err := e.createUsers(ctx, n, "users")
		if err != nil {
			return nil, err
		}
		creds = make([]string, n)
		err = parallel(ctx, n, e.workers(), "sessions", e.progress, func(ctx context.Context, i int) error {
			var err error
			creds[i], err = e.createSession(ctx, users[i])
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	creds = shuffled(creds)
	var next atomic.Uint64
	return &scenario{name: "account", steps: []string{"account"}, notes: notes, op: func(ctx context.Context, steps []time.Duration) error {
		cred := creds[next.Add(1)%uint64(len(creds))]
		_, err := e.timed(ctx, "account", call{method: "GET", path: "/v1/account", session: cred}, 200, &steps[0])
		return err
	}}, nil
}

// setupFlow: a sign-in through a verifier plugin, then the exchange of
// the secret it delivered. The self-started daemon signs in users it
// enrolls with its password provider; a target uses --provider and
// --payload.
func (e *env) setupFlow(ctx context.Context) (*scenario, error) {
	provider, payloads := e.cfg.Provider, [][]byte{[]byte(e.cfg.Payload)}
	var notes []string
	if e.core != nil {
		provider = passwordProvider
		n := max(64, 4*e.cfg.Clients)
		users, err := e.createUsers(ctx, n, "users")
		if err != nil {
			return nil, err
		}
		run := tokenstore.NewID()[:8] // usernames must be new in a reused database
		payloads = make([][]byte, n)
		err = parallel(ctx, n, e.cfg.Clients, "enroll", e.progress, func(ctx context.Context, i int) error {
			login := map[string]string{"username": "bench-" + run + "-" + strconv.Itoa(i), "password": "bench-password-" + strconv.Itoa(i)}
			payloads[i] = mustJSON(login)
			return e.api.expect(ctx, "enroll", call{method: "POST", path: "/v1/users/" + users[i] + "/providers/" + provider, body: payloads[i], withKey: true}, 201, nil)
		})
		if err != nil {
			return nil, err
		}
		notes = append(notes, fmt.Sprintf("flow signs in %d users in turn with the password plugin (argon2id m=%d KiB t=1: insecure_fast, so the flow measures handoff, not argon2)", n, e.cfg.Argon2KiB))
	}
	path := "/v1/providers/" + provider + "/verify"
	var next atomic.Uint64
	return &scenario{name: "flow", steps: []string{"verify", "exchange"}, notes: notes, op: func(ctx context.Context, steps []time.Duration) error {
		p := payloads[next.Add(1)%uint64(len(payloads))]
		body, err := e.timed(ctx, "verify", call{method: "POST", path: path, body: p}, 201, &steps[0])
		if err != nil {
			return err
		}
		var t struct {
			UserID string `json:"userId"`
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(body, &t); err != nil || t.UserID == "" || t.Secret == "" {
			return &statusError{Step: "verify", Status: 201, Body: "no userId and secret in the answer: the provider must deliver via response"}
		}
		_, err = e.timed(ctx, "exchange", exchangeCall(t.UserID, t.Secret), 201, &steps[1])
		return err
	}}, nil
}
