package tokenstore

import (
	"context"
	"errors"
)

// Loader is an optional capability of a Store: it stores many new records
// at once, far faster than a step each (PostgreSQL copies them in with
// COPY; bolt writes them in one transaction). The bench's preload uses it
// to put a million signed-in users in a store in minutes. The users must
// be new (their ids, emails and phones free), and each session and token
// must belong to one of users; no rule (cap, eviction) is applied.
type Loader interface {
	Load(ctx context.Context, users []User, sessions []Session, tokens []Token) error
}

// SignedIn is one user Load made, with its session's credential.
type SignedIn struct {
	UserID     string
	Credential string
}

// LoadSignedIn puts n new users in the store, each with a live session
// (opened by provider) and an outstanding token whose secret nobody
// keeps: what a daemon with n signed-in users holds. It writes them in
// batches through the store's Loader (a store without one is an error)
// and calls each (when not nil) with every user made, from one
// goroutine.
func (c *Core) LoadSignedIn(ctx context.Context, n int, provider string, cl Client, each func(i int, s SignedIn)) error {
	loader, ok := c.store.(Loader)
	if !ok {
		return errors.New("tokenstore: the store has no Loader")
	}
	const batch = 5000
	for from := 0; from < n; from += batch {
		size := min(batch, n-from)
		users := make([]User, size)
		sessions := make([]Session, size)
		tokens := make([]Token, size)
		made := make([]SignedIn, size)
		for i := range size {
			now := c.now()
			users[i] = User{ID: NewID(), Status: true, CreatedAt: now, UpdatedAt: now}
			secret := randomHex(sessionSecretLength)
			sessions[i] = Session{ID: NewID(), UserID: users[i].ID, Hash: sha256Sum(secret), CreatedAt: now, UpdatedAt: now,
				Expire: now.Add(c.opts.SessionDuration), Provider: provider, Factors: []string{provider}, IP: cl.IP, UserAgent: cl.UserAgent}
			t, _, err := c.newToken(MintRequest{UserID: users[i].ID, IP: cl.IP, UserAgent: cl.UserAgent}, now)
			if err != nil {
				return err
			}
			tokens[i] = t
			made[i] = SignedIn{UserID: users[i].ID, Credential: Credential(users[i].ID, secret)}
		}
		err := c.call(ctx, "load", func(ctx context.Context) error { return loader.Load(ctx, users, sessions, tokens) })
		if err != nil {
			return err
		}
		if each != nil {
			for i, s := range made {
				each(from+i, s)
			}
		}
	}
	return nil
}
