// Command v1fixture writes a bolt store file with the v1 core (the
// main-branch code before storage v2, whose steps ran over the bucket
// Tx), and the secrets of what it made as JSON, for the tests that open
// v1 files with later code. Run it from a checkout of that code:
//
//	go run ./cmd/v1fixture OUT.db OUT.json
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
)

// Fixture is what the test needs to know of the file.
type Fixture struct {
	Now         time.Time `json:"now"` // the clock the file was made at
	Alice       string    `json:"alice"`
	Bob         string    `json:"bob"`
	Carol       string    `json:"carol"`
	TokenSecret string    `json:"tokenSecret"` // a live token of Alice's
	BobSecret   string    `json:"bobSecret"`   // a live token of Bob's, minted through a provider
	Credential  string    `json:"credential"`  // a session of Alice's
	SessionID   string    `json:"sessionId"`
	APIKey      string    `json:"apiKey"`
	APIKeyID    string    `json:"apiKeyId"`
}

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: v1fixture OUT.db OUT.json")
	}
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st, err := bolt.Open(os.Args[1], bolt.Options{})
	check(err)
	core, err := tokenstore.New(ctx, st, tokenstore.Options{Now: clock})
	check(err)
	f := Fixture{Now: now}

	alice, err := core.CreateUser(ctx, tokenstore.NewUser{ID: "alice", Email: "Alice@Example.com", Phone: "+15550001", Name: "Alice"})
	check(err)
	_, err = core.UpdateUser(ctx, alice.ID, func(u *tokenstore.User) error {
		u.Labels = []string{"admin"}
		u.Prefs = map[string]any{"theme": "dark"}
		return nil
	})
	check(err)
	now = now.Add(time.Second)
	bob, err := core.CreateUser(ctx, tokenstore.NewUser{ID: "bob", Email: "bob@example.com", Name: "Bob"})
	check(err)
	now = now.Add(time.Second)
	carol, err := core.CreateUser(ctx, tokenstore.NewUser{ID: "carol", Name: "Carol"})
	check(err)
	f.Alice, f.Bob, f.Carol = alice.ID, bob.ID, carol.ID

	// Alice: a session opened by an exchange, a live token, an expired
	// one, and a token that faced a wrong guess.
	_, secret, err := core.Mint(ctx, tokenstore.MintRequest{UserID: alice.ID, Length: 12, IP: "192.0.2.1"})
	check(err)
	s, cred, err := core.Exchange(ctx, alice.ID, secret, tokenstore.Client{IP: "192.0.2.1", UserAgent: "fixture"})
	check(err)
	f.Credential, f.SessionID = cred, s.ID
	_, _, err = core.Mint(ctx, tokenstore.MintRequest{UserID: alice.ID, Length: 12, Expire: time.Minute})
	check(err)
	_, f.TokenSecret, err = core.Mint(ctx, tokenstore.MintRequest{UserID: alice.ID, Length: 12, Expire: time.Hour})
	check(err)
	if _, _, err := core.Exchange(ctx, alice.ID, "wrong-guess", tokenstore.Client{}); err == nil {
		log.Fatal("a wrong guess exchanged")
	}
	now = now.Add(2 * time.Minute) // the one-minute token has expired

	// Bob: an identity and a token minted through its provider.
	_, err = core.LinkIdentity(ctx, tokenstore.Identity{Provider: "oidc", Subject: "bob-sub", UserID: bob.ID, Email: "bob@example.com", EmailVerified: true, Name: "Bob", Claims: map[string]any{"groups": []any{"a", "b"}}})
	check(err)
	_, f.BobSecret, err = core.Mint(ctx, tokenstore.MintRequest{UserID: bob.ID, Length: 12, Expire: time.Hour, Provider: "oidc", ProviderUID: "bob-sub"})
	check(err)

	k, key, err := core.CreateKey(ctx, "fixture", []string{"users.read"}, time.Time{})
	check(err)
	f.APIKey, f.APIKeyID = key, k.ID

	kv := core.KV("plugin")
	check(kv.Put(ctx, "plain", []byte("value"), 0))
	check(kv.Put(ctx, "ttl", []byte("short"), 24*time.Hour))
	_, err = kv.Add(ctx, "counter", 41, 0)
	check(err)
	_, _, err = core.Hit(ctx, "route:ip", time.Hour, now)
	check(err)
	check(st.Close())

	raw, err := json.MarshalIndent(f, "", "  ")
	check(err)
	check(os.WriteFile(os.Args[2], append(raw, '\n'), 0o644))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
