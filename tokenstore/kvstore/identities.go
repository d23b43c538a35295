package kvstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// identityKey is where an identity lives: provider, then subject.
func identityKey(provider, subject string) []byte { return key(provider, subject) }

// Identity returns the identity of subject at provider.
func (s *Store) Identity(ctx context.Context, provider, subject string) (tokenstore.Identity, error) {
	var id tokenstore.Identity
	err := s.b.View(ctx, func(tx Tx) error {
		return getJSON(tx, bucketIdentities, identityKey(provider, subject), &id)
	})
	if err != nil {
		return tokenstore.Identity{}, err
	}
	return id, nil
}

// LinkIdentity stores id for its (existing) user in one Update.
func (s *Store) LinkIdentity(ctx context.Context, id tokenstore.Identity) (tokenstore.Identity, error) {
	var out tokenstore.Identity
	err := s.b.Update(ctx, func(tx Tx) error {
		if _, err := getUser(tx, id.UserID); err != nil {
			return err
		}
		out = id
		return putIdentity(tx, &out)
	})
	if err != nil {
		return tokenstore.Identity{}, err
	}
	return out, nil
}

// putIdentity stores id with its user index entry, keeping the CreatedAt
// of an identity it replaces and moving the index entry of one that was
// another user's.
func putIdentity(tx Tx, id *tokenstore.Identity) error {
	var old tokenstore.Identity
	err := getJSON(tx, bucketIdentities, identityKey(id.Provider, id.Subject), &old)
	switch {
	case err == nil:
		id.CreatedAt = old.CreatedAt
		if old.UserID != id.UserID {
			if err := tx.Delete(bucketUserIdentities, key(old.UserID, id.Provider, id.Subject)); err != nil {
				return err
			}
		}
	case !errors.Is(err, tokenstore.ErrNotFound):
		return err
	}
	if err := putJSON(tx, bucketIdentities, identityKey(id.Provider, id.Subject), id, time.Time{}); err != nil {
		return err
	}
	return tx.Put(bucketUserIdentities, key(id.UserID, id.Provider, id.Subject), nil, time.Time{})
}

// SignIn resolves the identity and mints the token for an active user,
// as tokenstore.SignIn describes, in one Update. A known identity whose
// fields are what the provider says again, with no token to mint (none
// asked, or a blocked user), is answered from a read transaction: the
// usual repeat sign-in costs no durable commit.
func (s *Store) SignIn(ctx context.Context, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	var (
		res  tokenstore.SignInResult
		done bool
	)
	err := s.b.View(ctx, func(tx Tx) error {
		known, err := knownIdentity(tx, in.Identity)
		if err != nil || known == nil || !tokenstore.SameIdentity(*known, in.Identity) {
			return err
		}
		user, err := getUser(tx, known.UserID)
		if err != nil {
			return err
		}
		res = tokenstore.SignInResult{User: user, Identity: *known}
		done = in.Token == nil || !user.Status
		return nil
	})
	if err != nil {
		return tokenstore.SignInResult{}, err
	}
	if done {
		return res, nil
	}
	err = s.b.Update(ctx, func(tx Tx) error {
		var err error
		if res, err = resolveIdentity(tx, in); err != nil || in.Token == nil || !res.User.Status {
			return err
		}
		t := *in.Token
		t.UserID = res.User.ID
		res.Minted = true
		return putToken(tx, t.UserID, t.Hash, encodeToken(t), t.Expire, in.Keep, in.Now)
	})
	if err != nil {
		return tokenstore.SignInResult{}, err
	}
	return res, nil
}

// knownIdentity returns the stored identity of id's provider and subject,
// or nil.
func knownIdentity(tx Tx, id tokenstore.Identity) (*tokenstore.Identity, error) {
	var known tokenstore.Identity
	err := getJSON(tx, bucketIdentities, identityKey(id.Provider, id.Subject), &known)
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &known, nil
}

// resolveIdentity is SignIn's resolution inside its Update: the known
// identity's user, else the owner of its email, else a new user.
func resolveIdentity(tx Tx, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	id := in.Identity
	if id.CreatedAt.IsZero() {
		id.CreatedAt = in.Now
	}
	if id.UpdatedAt.IsZero() {
		id.UpdatedAt = in.Now
	}
	known, err := knownIdentity(tx, id)
	if err != nil {
		return tokenstore.SignInResult{}, err
	}
	if known != nil {
		user, err := getUser(tx, known.UserID)
		if err != nil {
			return tokenstore.SignInResult{}, err
		}
		if tokenstore.SameIdentity(*known, id) {
			return tokenstore.SignInResult{User: user, Identity: *known}, nil
		}
		return linkTo(tx, user, id, false)
	}
	if id.Email != "" {
		owner, err := tx.Get(bucketUsersByEmail, []byte(strings.ToLower(id.Email)))
		switch {
		case err == nil && in.Policy.LinkByEmail && id.EmailVerified:
			user, err := getUser(tx, string(owner))
			if err != nil {
				return tokenstore.SignInResult{}, err
			}
			if err := markEmailVerified(tx, &user, id.Email, id.UpdatedAt); err != nil {
				return tokenstore.SignInResult{}, err
			}
			return linkTo(tx, user, id, false)
		case err == nil && in.Policy.Create:
			return tokenstore.SignInResult{}, tokenstore.ErrEmailExists
		case err != nil && !errors.Is(err, tokenstore.ErrNotFound):
			return tokenstore.SignInResult{}, err
		}
	}
	if !in.Policy.Create {
		return tokenstore.SignInResult{}, tokenstore.ErrIdentityUnlinked
	}
	user := in.NewUser
	if user.Phone != "" {
		if _, err := tx.Get(bucketUsersByPhone, []byte(user.Phone)); err == nil {
			user.Phone = "" // a phone another user holds is not copied
		} else if !errors.Is(err, tokenstore.ErrNotFound) {
			return tokenstore.SignInResult{}, err
		}
	}
	if err := insertUser(tx, user); err != nil {
		return tokenstore.SignInResult{}, err
	}
	return linkTo(tx, user, id, true)
}

// linkTo stores id as user's and returns the result of a sign-in that
// resolved to user.
func linkTo(tx Tx, user tokenstore.User, id tokenstore.Identity, created bool) (tokenstore.SignInResult, error) {
	id.UserID = user.ID
	if err := putIdentity(tx, &id); err != nil {
		return tokenstore.SignInResult{}, err
	}
	return tokenstore.SignInResult{User: user, Identity: id, Created: created}, nil
}

// markEmailVerified sets the user's EmailVerification when the identity
// that links to it by email vouches for that same address (the caller
// checked EmailVerified). A user already verified is not rewritten.
func markEmailVerified(tx Tx, u *tokenstore.User, email string, now time.Time) error {
	if u.EmailVerification || !strings.EqualFold(u.Email, email) {
		return nil
	}
	u.EmailVerification = true
	u.UpdatedAt = now
	return putUser(tx, *u)
}

// Identities returns the user's identities through the user's identity
// index, whose keys sort by provider, then subject.
func (s *Store) Identities(ctx context.Context, userID string) ([]tokenstore.Identity, error) {
	out := []tokenstore.Identity{}
	err := s.b.View(ctx, func(tx Tx) error {
		var keys [][]byte
		if err := tx.Scan(bucketUserIdentities, prefix(userID), nil, func(k, _ []byte) bool {
			keys = append(keys, clone(k[len(userID)+1:]))
			return true
		}); err != nil {
			return err
		}
		for _, k := range keys {
			var id tokenstore.Identity
			if err := getJSON(tx, bucketIdentities, k, &id); err == nil {
				out = append(out, id)
			} else if !errors.Is(err, tokenstore.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	return out, err
}

// deleteUserIdentities deletes userID's identities and their index.
func deleteUserIdentities(tx Tx, userID string) error {
	keys, err := deletePrefix(tx, bucketUserIdentities, prefix(userID))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(bucketIdentities, k[len(userID)+1:]); err != nil {
			return err
		}
	}
	return nil
}
