package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// env is what a scenario's setup may use: the API, and the token core
// when the daemon runs in this process (setup then skips HTTP, which
// makes preloading a million records a matter of minutes).
type env struct {
	cfg      Config
	api      *client
	core     *tokenstore.Core // nil for a target
	progress io.Writer

	// A sample of the preloaded users and of their session credentials,
	// spread evenly over the preload, so the scenarios can write and read
	// all over a large store rather than at its newest end (ids are
	// time-ordered).
	sampleUsers []string
	sampleCreds []string
}

// Sample sizes kept from a preload.
const (
	maxSampleUsers = 50000
	maxSampleCreds = 10000
)

// coreWorkers is how many goroutines write through the core at once
// during setup: enough to fill the bolt store's group commits.
const coreWorkers = 512

// pgCoreWorkers is coreWorkers on PostgreSQL.
const pgCoreWorkers = 32

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error. With a label it prints progress every few seconds.
func parallel(ctx context.Context, n, workers int, label string, progress io.Writer, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stopTicker := make(chan struct{})
	if label != "" && progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopTicker:
					return
				case <-t.C:
					d := done.Load()
					fmt.Fprintf(progress, "  %s: %s/%s (%s/s)\n", label, thousands(d), thousands(int64(n)), thousands(int64(float64(d)/time.Since(start).Seconds())))
				}
			}
		}()
	}
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopTicker)
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

func (e *env) workers() int {
	if e.core != nil && e.cfg.Store == "postgres" {
		// Each worker holds a pooled connection for its transaction:
		// more than the pool only queue, and 512 serializable
		// transactions at once mostly fail each other and retry.
		return pgCoreWorkers
	}
	if e.core != nil {
		return coreWorkers
	}
	return e.cfg.Clients
}

// createUsers makes n users and returns their ids.
func (e *env) createUsers(ctx context.Context, n int, label string) ([]string, error) {
	ids := make([]string, n)
	err := parallel(ctx, n, e.workers(), label, e.progress, func(ctx context.Context, i int) error {
		var err error
		ids[i], err = e.createUser(ctx)
		return err
	})
	return ids, err
}

func (e *env) createUser(ctx context.Context) (string, error) {
	if e.core != nil {
		u, err := e.core.CreateUser(ctx, tokenstore.NewUser{})
		return u.ID, err
	}
	var u struct {
		ID string `json:"$id"`
	}
	err := e.api.expect(ctx, "create user", call{method: "POST", path: "/v1/users", body: []byte(`{"userId":"unique()"}`), withKey: true}, 201, &u)
	return u.ID, err
}

// mint mints a token for userID and returns its secret.
func (e *env) mint(ctx context.Context, userID string) (string, error) {
	if e.core != nil {
		_, secret, err := e.core.Mint(ctx, tokenstore.MintRequest{UserID: userID})
		return secret, err
	}
	var t struct {
		Secret string `json:"secret"`
	}
	err := e.api.expect(ctx, "mint", call{method: "POST", path: "/v1/users/" + userID + "/tokens", body: []byte(`{}`), withKey: true}, 201, &t)
	return t.Secret, err
}

// createSession opens a session for userID and returns its credential
// (what X-Appwrite-Session carries).
func (e *env) createSession(ctx context.Context, userID string) (string, error) {
	if e.core != nil {
		_, cred, err := e.core.CreateSession(ctx, userID, "bench", benchClient)
		return cred, err
	}
	var s struct {
		Secret string `json:"secret"`
	}
	err := e.api.expect(ctx, "create session", call{method: "POST", path: "/v1/users/" + userID + "/sessions", body: []byte(`{}`), withKey: true}, 201, &s)
	return s.Secret, err
}

// benchClient is the client the bench's sessions record.
var benchClient = tokenstore.Client{IP: "127.0.0.1", UserAgent: "handoff-bench"}

// preload puts n live sessions in the store, each of a user of its own
// with one outstanding token: what a daemon with n signed-in users
// holds. It returns how long that took.
func (e *env) preload(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	fmt.Fprintf(e.progress, "preload: %s users, each with a session and a token\n", thousands(int64(n)))
	userStep := (n + maxSampleUsers - 1) / maxSampleUsers
	credStep := (n + maxSampleCreds - 1) / maxSampleCreds
	e.sampleUsers = make([]string, (n+userStep-1)/userStep)
	e.sampleCreds = make([]string, (n+credStep-1)/credStep)
	if e.core != nil {
		if _, ok := e.core.Store().(tokenstore.Loader); ok {
			err := e.core.LoadSignedIn(ctx, n, "bench", benchClient, func(i int, s tokenstore.SignedIn) {
				if i%userStep == 0 {
					e.sampleUsers[i/userStep] = s.UserID
				}
				if i%credStep == 0 {
					e.sampleCreds[i/credStep] = s.Credential
				}
				if (i+1)%100000 == 0 {
					fmt.Fprintf(e.progress, "  preload: %s/%s\n", thousands(int64(i+1)), thousands(int64(n)))
				}
			})
			return e.preloaded(start, n, err)
		}
	}
	err := parallel(ctx, n, e.workers(), "preload", e.progress, func(ctx context.Context, i int) error {
		id, err := e.createUser(ctx)
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		cred, err := e.createSession(ctx, id)
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if i%userStep == 0 {
			e.sampleUsers[i/userStep] = id
		}
		if i%credStep == 0 {
			e.sampleCreds[i/credStep] = cred
		}
		if _, err := e.mint(ctx, id); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		return nil
	})
	return e.preloaded(start, n, err)
}

// preloaded reports a preload of n users that began at start.
func (e *env) preloaded(start time.Time, n int, err error) (time.Duration, error) {
	took := time.Since(start)
	if err == nil {
		fmt.Fprintf(e.progress, "preload: done in %s (%s users/s)\n", took.Round(100*time.Millisecond), thousands(int64(float64(n)/took.Seconds())))
	}
	return took, err
}

// thousands formats n with commas.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
