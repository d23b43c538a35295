package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
)

// open returns the typed store over a fresh bolt file.
func open(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "handoff.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func user(id string, created time.Time) tokenstore.User {
	return tokenstore.User{ID: id, Name: id, Status: true, CreatedAt: created, UpdatedAt: created}
}

// TestScanUsersBatches: ScanUsers reads in batches and calls fn outside
// its transactions, so fn may use the store (here, a write) without
// deadlocking the writer; the order is creation order then id, across
// batch boundaries, from a cursor.
func TestScanUsersBatches(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const n = 250
	var want []string
	for i := range n {
		id := fmt.Sprintf("u%03d", n-1-i) // ids against creation order
		must(t, s.CreateUser(ctx, user(id, t0.Add(time.Duration(i/2)*time.Second))))
		want = append(want, id)
	}
	// Two users per second: within a second, the id orders them.
	for i := 0; i < n; i += 2 {
		want[i], want[i+1] = want[i+1], want[i]
	}
	var got []string
	must(t, s.ScanUsers(ctx, "", func(u tokenstore.User) bool {
		got = append(got, u.ID)
		_, err := s.UpdateUser(ctx, u.ID, func(u *tokenstore.User) error { u.Name = "seen"; return nil })
		must(t, err)
		return true
	}))
	if !slices.Equal(got, want) {
		t.Fatalf("ScanUsers order:\n got %q\nwant %q", got, want)
	}
	got = got[:0]
	must(t, s.ScanUsers(ctx, want[99], func(u tokenstore.User) bool {
		got = append(got, u.ID)
		return len(got) < 120
	}))
	if !slices.Equal(got, want[100:220]) {
		t.Fatalf("ScanUsers after %s, 120 of them = %q", want[99], got)
	}
	err := s.ScanUsers(ctx, "nobody", func(tokenstore.User) bool { return true })
	if !errors.Is(err, tokenstore.ErrCursorNotFound) {
		t.Fatalf("ScanUsers after an unknown user = %v", err)
	}
}

// TestSignInRepeatCommitsNothing: the repeat sign-in of a known identity
// whose fields are unchanged, without a token, is a read; with a token,
// or changed fields, it is one commit.
func TestSignInRepeatCommitsNothing(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	id := tokenstore.Identity{Provider: "oidc", Subject: "sub", Email: "a@example.com", EmailVerified: true, Name: "A",
		Claims: map[string]any{"n": 1.5}, CreatedAt: t0, UpdatedAt: t0}
	in := tokenstore.SignIn{Identity: id, Policy: tokenstore.LinkPolicy{Create: true}, NewUser: user("a", t0), Now: t0}
	in.NewUser.Email = "a@example.com"
	first, err := s.SignIn(ctx, in)
	must(t, err)
	if !first.Created || first.User.ID != "a" || first.Identity.UserID != "a" {
		t.Fatalf("first SignIn = %+v", first)
	}
	commits := func() uint64 { return s.Stats().Commits }

	before := commits()
	in.Identity.UpdatedAt = t0.Add(time.Hour)
	in.NewUser.ID = "other"
	again, err := s.SignIn(ctx, in)
	must(t, err)
	if c := commits() - before; c != 0 || again.Created || again.User.ID != "a" || !again.Identity.UpdatedAt.Equal(t0) {
		t.Fatalf("repeat SignIn = %+v after %d commits, want the stored identity and none", again, c)
	}

	in.Token = &tokenstore.Token{ID: "t1", Hash: []byte("h1"), CreatedAt: t0, Expire: t0.Add(time.Hour)}
	in.Keep = 4
	before = commits()
	_, err = s.SignIn(ctx, in)
	must(t, err)
	toks, err := s.Tokens(ctx, "a")
	must(t, err)
	if c := commits() - before; c != 1 || len(toks) != 1 || toks[0].UserID != "a" {
		t.Fatalf("SignIn with a token: %d commits, tokens %+v", c, toks)
	}

	in.Token = nil
	in.Identity.Name = "A. Person"
	changed, err := s.SignIn(ctx, in)
	must(t, err)
	if !changed.Identity.UpdatedAt.Equal(t0.Add(time.Hour)) || !changed.Identity.CreatedAt.Equal(t0) || changed.Identity.Name != "A. Person" {
		t.Fatalf("SignIn with a changed name stored %+v", changed.Identity)
	}
}

// TestUpdateSessionMovesIndex: a change of CreatedAt moves the session in
// its user's index, so the order and the count stay right.
func TestUpdateSessionMovesIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateUser(ctx, user("a", t0)))
	for i, id := range []string{"s1", "s2"} {
		c := t0.Add(time.Duration(i) * time.Second)
		must(t, s.CreateSession(ctx, tokenstore.Session{ID: id, UserID: "a", Hash: []byte("h" + id), CreatedAt: c, UpdatedAt: c, Expire: c.Add(time.Hour)}, -1))
	}
	_, err := s.UpdateSession(ctx, "a", "s1", func(sess *tokenstore.Session) error {
		sess.CreatedAt = t0.Add(time.Minute)
		sess.ID, sess.UserID = "evil", "b" // ignored
		return nil
	})
	must(t, err)
	sessions, err := s.Sessions(ctx, "a")
	must(t, err)
	if len(sessions) != 2 || sessions[0].ID != "s2" || sessions[1].ID != "s1" {
		t.Fatalf("Sessions after moving s1 = %+v", sessions)
	}
	if n, err := s.DeleteSessions(ctx, "a"); err != nil || n != 2 {
		t.Fatalf("DeleteSessions = %d, %v", n, err)
	}
	if _, _, err := s.SessionByHash(ctx, "a", []byte("hs1")); !errors.Is(err, tokenstore.ErrSessionNotFound) {
		t.Fatalf("SessionByHash after DeleteSessions = %v", err)
	}
}
