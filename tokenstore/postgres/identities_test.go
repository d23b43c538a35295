package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// signInStep is a SignIn of provider/subject with a fresh NewUser and, with
// mint, a fresh token.
func signInStep(subject, email string, policy tokenstore.LinkPolicy, mint bool) tokenstore.SignIn {
	now := time.Now().UTC().Truncate(time.Microsecond)
	in := tokenstore.SignIn{
		Identity: tokenstore.Identity{Provider: "oidc", Subject: subject, Email: email, EmailVerified: email != "",
			Name: "N", Claims: map[string]any{"sub": subject}, CreatedAt: now, UpdatedAt: now},
		Policy:  policy,
		NewUser: tokenstore.User{ID: tokenstore.NewID(), Name: "N", Email: email, Status: true, CreatedAt: now, UpdatedAt: now},
		Keep:    4,
		Now:     now,
	}
	if mint {
		hash := make([]byte, 32)
		_, _ = rand.Read(hash)
		in.Token = &tokenstore.Token{ID: tokenstore.NewID(), Hash: hash, CreatedAt: now, Expire: now.Add(time.Hour)}
	}
	return in
}

// TestSignInFirstRace signs in one new identity from many goroutines on
// two replicas at once, with and without an email: one user and one
// identity result, every sign-in resolves to that user and mints for it,
// and exactly one reports it created the user.
func TestSignInFirstRace(t *testing.T) {
	schema := freshSchema(t)
	replicas := []*Store{openSchema(t, schema, Options{}), openSchema(t, schema, Options{})}
	ctx := context.Background()
	for round := range 6 {
		subject := fmt.Sprintf("race-%d", round)
		email := ""
		if round%2 == 0 {
			email = subject + "@example.com"
		}
		const n = 8
		results := make([]tokenstore.SignInResult, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				results[i], errs[i] = replicas[i%2].SignIn(ctx,
					signInStep(subject, email, tokenstore.LinkPolicy{Create: true, LinkByEmail: true}, true))
			})
		}
		wg.Wait()
		created := 0
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("round %d: SignIn: %v", round, errs[i])
			}
			if r.User.ID != results[0].User.ID || r.Identity.UserID != r.User.ID || !r.Minted {
				t.Fatalf("round %d: sign-ins resolved apart: %+v and %+v", round, r, results[0])
			}
			if r.Created {
				created++
			}
		}
		if created != 1 {
			t.Fatalf("round %d: %d sign-ins created the user", round, created)
		}
		var users, identities, tokens int
		err := replicas[0].pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM handoff_users WHERE name = 'N' AND id = $1), "+
			"(SELECT count(*) FROM handoff_identities WHERE subject = $2), (SELECT count(*) FROM handoff_tokens WHERE user_id = $1)",
			results[0].User.ID, subject).Scan(&users, &identities, &tokens)
		if err != nil {
			t.Fatal(err)
		}
		var all int
		if err := replicas[0].pool.QueryRow(ctx, "SELECT count(*) FROM handoff_users").Scan(&all); err != nil {
			t.Fatal(err)
		}
		if users != 1 || identities != 1 || tokens != 5 || all != round+1 {
			t.Fatalf("round %d: %d users of %d, %d identities, %d tokens; want 1 of %d, 1, 5 (Keep+1)", round, users, all, identities, tokens, round+1)
		}
	}
}

// TestSignInKnownOneRoundTrip: the sign-in of a known identity is one round
// trip, minting or not, changed or not, and for a blocked user (who gets
// no token), counted by the store and on the wire (pgproxy). Each step
// runs once unmeasured first, to warm the connection's statement cache.
func TestSignInKnownOneRoundTrip(t *testing.T) {
	p, st := proxiedStore(t, Options{MaxConns: 1, MinConns: 1})
	ctx := context.Background()
	first, err := st.SignIn(ctx, signInStep("known", "known@example.com", tokenstore.LinkPolicy{Create: true}, false))
	if err != nil || !first.Created {
		t.Fatalf("first SignIn = %+v, %v", first, err)
	}
	count := func(label string, step func(warm int) tokenstore.SignIn) tokenstore.SignInResult {
		t.Helper()
		var res tokenstore.SignInResult
		for warm := range 2 {
			in := step(warm)
			before, flights := st.Stats().RoundTrips, p.Flights()
			var err error
			if res, err = st.SignIn(ctx, in); err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			rt, wire := st.Stats().RoundTrips-before, p.Flights()-flights
			if warm == 1 && (rt != 1 || wire != 1) {
				t.Fatalf("%s: %d round trips counted by the store, %d on the wire; want 1", label, rt, wire)
			}
		}
		if res.User.ID != first.User.ID || res.Created {
			t.Fatalf("%s: %+v", label, res)
		}
		return res
	}
	known := func(mint bool) func(int) tokenstore.SignIn {
		return func(int) tokenstore.SignIn {
			return signInStep("known", "known@example.com", tokenstore.LinkPolicy{}, mint)
		}
	}
	same := count("unchanged, minting", known(true))
	if !same.Minted || !same.Identity.UpdatedAt.Equal(first.Identity.UpdatedAt) {
		t.Fatalf("unchanged identity: %+v (first %+v)", same, first)
	}
	var changed tokenstore.SignIn
	res := count("changed, minting", func(warm int) tokenstore.SignIn {
		changed = signInStep("known", "known@example.com", tokenstore.LinkPolicy{}, true)
		changed.Identity.Name, changed.Identity.UpdatedAt = fmt.Sprint("New name ", warm), changed.Now.Add(time.Second)
		return changed
	})
	if res.Identity.Name != "New name 1" || !res.Identity.UpdatedAt.Equal(changed.Identity.UpdatedAt) ||
		!res.Identity.CreatedAt.Equal(first.Identity.CreatedAt) {
		t.Fatalf("changed identity: %+v", res.Identity)
	}
	if got, err := st.Identity(ctx, "oidc", "known"); err != nil || got.Name != "New name 1" {
		t.Fatalf("Identity after the change = %+v, %v", got, err)
	}
	count("unchanged, no token", known(false))

	if _, err := st.pool.Exec(ctx, "UPDATE handoff_users SET status = false WHERE id = $1", first.User.ID); err != nil {
		t.Fatal(err)
	}
	if blocked := count("blocked", known(true)); blocked.Minted {
		t.Fatal("a blocked user got a token")
	}
	toks, err := st.Tokens(ctx, first.User.ID)
	if err != nil || len(toks) != 4 {
		t.Fatalf("tokens = %d, %v; want the 4 minted while active", len(toks), err)
	}
	// The settings the known path leaves are the transaction's own: on the
	// same connection (MaxConns 1), an unknown identity finds none.
	if _, err := st.SignIn(ctx, signInStep("unknown", "", tokenstore.LinkPolicy{}, true)); !errors.Is(err, tokenstore.ErrIdentityUnlinked) {
		t.Fatalf("SignIn of an unknown identity = %v, want ErrIdentityUnlinked", err)
	}
	if toks, _ := st.Tokens(ctx, first.User.ID); len(toks) != 4 {
		t.Fatalf("a sign-in of another identity minted for this user: %d tokens", len(toks))
	}
}

// TestSignInRacesDeleteUser signs in a known identity while its user is
// deleted, from two replicas: every step succeeds (no deadlock between
// the sign-in's locks and the deletion's cascade), a sign-in after the
// deletion creates a user anew, and no token outlives its user.
func TestSignInRacesDeleteUser(t *testing.T) {
	schema := freshSchema(t)
	a, b := openSchema(t, schema, Options{}), openSchema(t, schema, Options{})
	ctx := context.Background()
	policy := tokenstore.LinkPolicy{Create: true}
	for round := range 10 {
		subject := fmt.Sprintf("del-%d", round)
		first, err := a.SignIn(ctx, signInStep(subject, "", policy, true))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				st := a
				if i%2 == 1 {
					st = b
				}
				if i == 3 {
					if err := st.DeleteUser(ctx, first.User.ID); err != nil {
						t.Errorf("DeleteUser: %v", err)
					}
					return
				}
				if _, err := st.SignIn(ctx, signInStep(subject, "", policy, true)); err != nil {
					t.Errorf("SignIn: %v", err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		var orphans, users int
		if err := a.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM handoff_tokens t WHERE NOT EXISTS (SELECT 1 FROM handoff_users u WHERE u.id = t.user_id)), "+
			"(SELECT count(*) FROM handoff_users u JOIN handoff_identities i ON i.user_id = u.id WHERE i.subject = $1)", subject).Scan(&orphans, &users); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 || users > 1 {
			t.Fatalf("round %d: %d tokens without a user, %d users of the identity", round, orphans, users)
		}
	}
}
