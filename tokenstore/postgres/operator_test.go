package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/handoffd/handoff/tokenstore"
)

// TestOperatorDeletesUserWithSQL: a user deleted by an operator's DELETE
// takes its tokens, sessions and identities with it (ON DELETE CASCADE),
// and the daemon stays consistent: the session no longer authenticates,
// the token no longer exchanges, and a user created again with the same
// id starts with nothing of the old one's.
func TestOperatorDeletesUserWithSQL(t *testing.T) {
	schema := freshSchema(t)
	st := openSchema(t, schema, Options{})
	ctx := context.Background()
	core, err := tokenstore.New(ctx, st, tokenstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.CreateUser(ctx, tokenstore.NewUser{ID: "alice", Email: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	_, cred, err := core.CreateSession(ctx, "alice", "test", tokenstore.Client{})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := core.Mint(ctx, tokenstore.MintRequest{UserID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.LinkIdentity(ctx, tokenstore.Identity{Provider: "idp", Subject: "sub-1", UserID: "alice"}); err != nil {
		t.Fatal(err)
	}

	conn := admin(t)
	if _, err := conn.Exec(ctx, "DELETE FROM "+schema+".handoff_users WHERE id = 'alice'"); err != nil {
		t.Fatalf("the operator's DELETE: %v", err)
	}
	for _, table := range []string{"handoff_tokens", "handoff_sessions", "handoff_identities"} {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+schema+"."+table+" WHERE user_id = 'alice'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s holds %d rows of the deleted user (%v), want none", table, n, err)
		}
	}
	if _, _, err := core.Authenticate(ctx, cred); !errors.Is(err, tokenstore.ErrSessionNotFound) {
		t.Fatalf("Authenticate after the DELETE: %v, want ErrSessionNotFound", err)
	}
	if _, _, err := core.Exchange(ctx, "alice", secret, tokenstore.Client{}); !errors.Is(err, tokenstore.ErrInvalidToken) {
		t.Fatalf("Exchange after the DELETE: %v, want ErrInvalidToken", err)
	}
	if _, err := core.FindIdentity(ctx, "idp", "sub-1"); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("FindIdentity after the DELETE: %v, want ErrNotFound", err)
	}

	if _, err := core.CreateUser(ctx, tokenstore.NewUser{ID: "alice", Email: "alice@example.com"}); err != nil {
		t.Fatalf("CreateUser again with the id and email of the deleted user: %v", err)
	}
	if _, _, err := core.Authenticate(ctx, cred); !errors.Is(err, tokenstore.ErrSessionNotFound) {
		t.Fatalf("the old session authenticates the new alice: %v", err)
	}
	if toks, err := core.ListTokens(ctx, "alice"); err != nil || len(toks) != 0 {
		t.Fatalf("the new alice has %d tokens (%v), want none", len(toks), err)
	}
}
