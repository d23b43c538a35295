package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// The races READ COMMITTED must survive thanks to the user's row lock
// (see doc.go), run on two stores (two daemons) sharing one schema.

// testSession is a fresh session of userID, created at now.
func testSession(userID string, i int, now time.Time) tokenstore.Session {
	return tokenstore.Session{ID: fmt.Sprintf("s%04d", i), UserID: userID, Hash: []byte(fmt.Sprintf("hash%04d", i)),
		CreatedAt: now, UpdatedAt: now, Expire: now.Add(time.Hour), Provider: "test", Factors: []string{"test"}}
}

// TestSessionCapRace: sessions opened at once, by CreateSession and by
// Exchange, never leave the user over the cap, and the newest stay.
func TestSessionCapRace(t *testing.T) {
	schema := freshSchema(t)
	a, b := openSchema(t, schema, Options{}), openSchema(t, schema, Options{})
	ctx := context.Background()
	u := newUser("capped")
	if err := a.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	const n, max = 40, 5
	start := time.Now().UTC().Truncate(time.Microsecond)
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		sess := testSession(u.ID, i, start.Add(time.Duration(i)*time.Millisecond))
		wg.Go(func() {
			if i%4 < 2 {
				if err := s.CreateSession(ctx, sess, max); err != nil {
					t.Errorf("CreateSession: %v", err)
				}
				return
			}
			tok := tokenstore.Token{ID: fmt.Sprintf("t%04d", i), UserID: u.ID, Hash: []byte(fmt.Sprintf("tok%04d", i)),
				CreatedAt: start, Expire: start.Add(time.Hour)}
			if err := s.Mint(ctx, tok, n, start); err != nil {
				t.Errorf("Mint: %v", err)
				return
			}
			res, err := s.Exchange(ctx, tokenstore.Exchange{UserID: u.ID, Hash: tok.Hash, Now: start, MaxAttempts: 5,
				Session: sess, MaxSessions: max})
			if err != nil || !res.OK {
				t.Errorf("Exchange: %+v, %v", res, err)
			}
		})
	}
	wg.Wait()
	wantNewestSessions(t, a, u.ID, n, max)
}

// wantNewestSessions checks that user holds the newest max of the n
// sessions s0000, s0001, … opened for it, oldest first.
func wantNewestSessions(t *testing.T, s *Store, user string, n, max int) {
	t.Helper()
	ss, err := s.Sessions(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != max {
		t.Fatalf("%d sessions after %d opens, want the cap, %d", len(ss), n, max)
	}
	for i, sess := range ss {
		if want := fmt.Sprintf("s%04d", n-max+i); sess.ID != want {
			t.Errorf("session %d is %s, want %s (the newest stay)", i, sess.ID, want)
		}
	}
}

// TestDeleteUserRace: mints and sessions racing the deletion of their
// user either land before it (and go with it) or find no user; nothing
// of the user is left.
func TestDeleteUserRace(t *testing.T) {
	schema := freshSchema(t)
	a, b := openSchema(t, schema, Options{}), openSchema(t, schema, Options{})
	ctx := context.Background()
	for round := range 5 {
		u := newUser(fmt.Sprintf("doomed%d", round))
		if err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		var wg sync.WaitGroup
		for i := range 20 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				var err error
				if i%2 == 0 {
					err = s.Mint(ctx, tokenstore.Token{ID: fmt.Sprint(i), UserID: u.ID, Hash: []byte{byte(i)}, CreatedAt: now, Expire: now.Add(time.Hour)}, 100, now)
				} else {
					err = s.CreateSession(ctx, testSession(u.ID, round*100+i, now), 100)
				}
				if err != nil && !errors.Is(err, tokenstore.ErrUserNotFound) {
					t.Errorf("step racing DeleteUser: %v", err)
				}
			})
			if i == 10 {
				wg.Go(func() {
					if err := b.DeleteUser(ctx, u.ID); err != nil {
						t.Errorf("DeleteUser: %v", err)
					}
				})
			}
		}
		wg.Wait()
		var left int
		err := a.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM handoff_tokens WHERE user_id = $1) + "+
			"(SELECT count(*) FROM handoff_sessions WHERE user_id = $1)", u.ID).Scan(&left)
		if err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Fatalf("round %d: %d tokens and sessions of the deleted user left", round, left)
		}
	}
}
