package tokenstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// FindIdentity returns the identity of subject at provider, or ErrNotFound.
func (c *Core) FindIdentity(ctx context.Context, provider, subject string) (Identity, error) {
	var id Identity
	err := c.store.View(ctx, func(tx Tx) error {
		return getJSON(tx, bucketIdentities, key(provider, subject), &id)
	})
	return id, err
}

// LinkIdentity links id (its Provider and Subject) to the user id.UserID,
// replacing any earlier link of that subject. An identity the core will
// not store (see checkIdentity) gives an IdentityError.
func (c *Core) LinkIdentity(ctx context.Context, id Identity) (Identity, error) {
	if err := checkIdentity(id); err != nil {
		return id, err
	}
	err := c.store.Update(ctx, func(tx Tx) error {
		if _, err := getUser(tx, id.UserID); err != nil {
			return err
		}
		return c.putIdentity(tx, &id)
	})
	return id, err
}

func (c *Core) putIdentity(tx Tx, id *Identity) error {
	now := c.now()
	var old Identity
	err := getJSON(tx, bucketIdentities, key(id.Provider, id.Subject), &old)
	switch {
	case err == nil:
		id.CreatedAt = old.CreatedAt
		if old.UserID != id.UserID {
			if err := tx.Delete(bucketUserIdentities, key(old.UserID, id.Provider, id.Subject)); err != nil {
				return err
			}
		}
	case errors.Is(err, ErrNotFound):
		id.CreatedAt = now
	default:
		return err
	}
	id.UpdatedAt = now
	if err := putJSON(tx, bucketIdentities, key(id.Provider, id.Subject), id, time.Time{}); err != nil {
		return err
	}
	return tx.Put(bucketUserIdentities, key(id.UserID, id.Provider, id.Subject), nil, time.Time{})
}

// ResolveIdentity maps a verified external identity to a user, in one
// transaction: a known (provider, subject) gives its user; else, under
// policy, the owner of its verified email is linked, or a new user is
// created. It returns the user and whether it was created. With nothing to
// link and creation off it gives ErrIdentityUnlinked; an email owned by
// another user without LinkByEmail gives ErrEmailExists.
//
// An identity the core will not store (see checkIdentity) gives an
// IdentityError before any transaction.
//
// A known identity whose fields (email, its verification, phone, name,
// claims) are what the provider says again is answered from a read
// transaction, without a write: the usual repeat sign-in costs no durable
// commit. An identity's UpdatedAt is therefore when its fields last
// changed, not its last sign-in.
func (c *Core) ResolveIdentity(ctx context.Context, id Identity, policy LinkPolicy) (User, bool, error) {
	var (
		user    User
		created bool
		same    bool
	)
	if err := checkIdentity(id); err != nil {
		return user, false, err
	}
	err := c.store.View(ctx, func(tx Tx) error {
		same = false
		var known Identity
		err := getJSON(tx, bucketIdentities, key(id.Provider, id.Subject), &known)
		if errors.Is(err, ErrNotFound) || err == nil && !sameIdentity(known, id) {
			return nil
		}
		if err != nil {
			return err
		}
		if user, err = getUser(tx, known.UserID); err != nil {
			return err
		}
		same = true
		return nil
	})
	if err != nil || same {
		return user, false, err
	}
	err = c.store.Update(ctx, func(tx Tx) error {
		created = false
		var known Identity
		err := getJSON(tx, bucketIdentities, key(id.Provider, id.Subject), &known)
		switch {
		case err == nil:
			user, err = getUser(tx, known.UserID)
			if err != nil {
				return err
			}
			id.UserID = user.ID
			return c.putIdentity(tx, &id)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if id.Email != "" {
			owner, err := tx.Get(bucketUsersByEmail, []byte(strings.ToLower(id.Email)))
			switch {
			case err == nil && policy.LinkByEmail && id.EmailVerified:
				user, err = getUser(tx, string(owner))
				if err != nil {
					return err
				}
				if err := c.markEmailVerified(tx, &user, id.Email); err != nil {
					return err
				}
				id.UserID = user.ID
				return c.putIdentity(tx, &id)
			case err == nil && policy.Create:
				return ErrEmailExists
			case err != nil && !errors.Is(err, ErrNotFound):
				return err
			}
		}
		if !policy.Create {
			return ErrIdentityUnlinked
		}
		now := c.now()
		user = User{ID: NewID(), Name: id.Name, Email: strings.ToLower(id.Email), Phone: id.Phone,
			EmailVerification: id.Email != "" && id.EmailVerified, Status: true, CreatedAt: now, UpdatedAt: now}
		if user.Phone != "" {
			if _, err := tx.Get(bucketUsersByPhone, []byte(user.Phone)); err == nil {
				user.Phone = "" // a phone another user holds is not copied
			}
		}
		if err := insertUser(tx, user); err != nil {
			return err
		}
		created = true
		id.UserID = user.ID
		return c.putIdentity(tx, &id)
	})
	return user, created, err
}

// markEmailVerified sets the user's emailVerification when the identity
// that links to it by email vouches for that same address (the caller
// checked EmailVerified): the IdP has proved the person holds it, which is
// what the flag says. A user already verified is not rewritten.
func (c *Core) markEmailVerified(tx Tx, u *User, email string) error {
	if u.EmailVerification || !strings.EqualFold(u.Email, email) {
		return nil
	}
	u.EmailVerification = true
	u.UpdatedAt = c.now()
	return tx.Put(bucketUsers, []byte(u.ID), mustJSON(*u), time.Time{})
}

// checkIdentity refuses an identity a provider should never have reported:
// a subject that is empty, over MaxSubjectLength bytes (a key the stores
// could not hold: bbolt's limit is 32 KiB) or not ValidText; an email,
// phone or name that could not be a user's (over MaxEmailLength or
// MaxPhoneLength bytes, a name over MaxNameLength characters, or not
// ValidText); claims over MaxClaimsSize bytes of JSON.
func checkIdentity(id Identity) error {
	bad := func(field, reason string, args ...any) error {
		return &IdentityError{Provider: id.Provider, Field: field, Reason: fmt.Sprintf(reason, args...)}
	}
	const notText = "is not valid UTF-8 or holds control or bidi override characters"
	for _, f := range []struct {
		name, value string
		max         int
	}{{"subject", id.Subject, MaxSubjectLength}, {"email", id.Email, MaxEmailLength}, {"phone", id.Phone, MaxPhoneLength}} {
		switch {
		case len(f.value) > f.max:
			return bad(f.name, "is %d bytes, over the limit of %d", len(f.value), f.max)
		case !ValidText(f.value):
			return bad(f.name, notText)
		}
	}
	switch {
	case id.Subject == "":
		return bad("subject", "is empty")
	case !ValidText(id.Name):
		return bad("name", notText)
	case utf8.RuneCountInString(id.Name) > MaxNameLength:
		return bad("name", "is over %d characters", MaxNameLength)
	}
	if len(id.Claims) > 0 {
		raw, err := json.Marshal(id.Claims)
		switch {
		case err != nil:
			return bad("claims", "cannot be encoded as JSON")
		case len(raw) > MaxClaimsSize:
			return bad("claims", "are %d bytes as JSON, over the limit of %d", len(raw), MaxClaimsSize)
		}
	}
	return nil
}

// sameIdentity reports whether the stored identity known already holds
// what id says. Claims are compared by their JSON, as they are stored; a
// difference only a round trip makes (a float's last digit) costs one
// needless write, never a missed one.
func sameIdentity(known, id Identity) bool {
	if known.Email != id.Email || known.EmailVerified != id.EmailVerified || known.Phone != id.Phone || known.Name != id.Name {
		return false
	}
	if len(known.Claims) == 0 && len(id.Claims) == 0 {
		return true
	}
	a, errA := json.Marshal(known.Claims)
	b, errB := json.Marshal(id.Claims)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// ListIdentities returns the identities linked to a user.
func (c *Core) ListIdentities(ctx context.Context, userID string) ([]Identity, error) {
	out := []Identity{}
	err := c.store.View(ctx, func(tx Tx) error {
		out = out[:0]
		var keys [][]byte
		if err := tx.Scan(bucketUserIdentities, prefix(userID), nil, func(k, _ []byte) bool {
			keys = append(keys, clone(k[len(userID)+1:]))
			return true
		}); err != nil {
			return err
		}
		for _, k := range keys {
			var id Identity
			if err := getJSON(tx, bucketIdentities, k, &id); err == nil {
				out = append(out, id)
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
	return out, err
}

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
