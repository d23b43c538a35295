package tokenstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// FindIdentity returns the identity of subject at provider, or ErrNotFound.
func (c *Core) FindIdentity(ctx context.Context, provider, subject string) (Identity, error) {
	var id Identity
	err := c.call(ctx, "identity", func(ctx context.Context) (err error) {
		id, err = c.store.Identity(ctx, provider, subject)
		return err
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
	now := c.now()
	id.CreatedAt, id.UpdatedAt = now, now
	err := c.call(ctx, "link_identity", func(ctx context.Context) (err error) {
		id, err = c.store.LinkIdentity(ctx, id)
		return err
	})
	return id, err
}

// ResolveIdentity maps a verified external identity to a user, in one
// step: a known (provider, subject) gives its user; else, under policy,
// the owner of its verified email is linked, or a new user is created. It
// returns the user and whether it was created. With nothing to link and
// creation off it gives ErrIdentityUnlinked; an email owned by another
// user without LinkByEmail gives ErrEmailExists.
//
// An identity the core will not store (see checkIdentity) gives an
// IdentityError before any store call.
//
// A known identity whose fields (email, its verification, phone, name,
// claims) are what the provider says again is not written: the usual
// repeat sign-in costs no durable commit. An identity's UpdatedAt is
// therefore when its fields last changed, not its last sign-in.
func (c *Core) ResolveIdentity(ctx context.Context, id Identity, policy LinkPolicy) (User, bool, error) {
	res, _, _, err := c.SignIn(ctx, id, policy, nil)
	return res.User, res.Created, err
}

// SignIn is ResolveIdentity and, when mint is not nil and the user it
// resolves to is active (Status), Mint for that user, in one store step:
// the usual sign-in of a known identity is one round trip on PostgreSQL.
// mint.UserID is ignored. The token and its secret are zero when none was
// minted.
func (c *Core) SignIn(ctx context.Context, id Identity, policy LinkPolicy, mint *MintRequest) (SignInResult, Token, string, error) {
	if err := checkIdentity(id); err != nil {
		return SignInResult{}, Token{}, "", err
	}
	now := c.now()
	id.CreatedAt, id.UpdatedAt = now, now
	step := SignIn{Identity: id, Policy: policy, Now: now, Keep: c.opts.MaxOutstanding - 1,
		NewUser: User{ID: NewID(), Name: id.Name, Email: strings.ToLower(id.Email), Phone: id.Phone,
			EmailVerification: id.Email != "" && id.EmailVerified, Status: true, CreatedAt: now, UpdatedAt: now}}
	var (
		t      Token
		secret string
	)
	if mint != nil {
		var err error
		if t, secret, err = c.newToken(*mint, now); err != nil {
			return SignInResult{}, Token{}, "", err
		}
		step.Token = &t
	}
	var res SignInResult
	err := c.call(ctx, "sign_in", func(ctx context.Context) (err error) {
		res, err = c.store.SignIn(ctx, step)
		return err
	})
	if err != nil || !res.Minted {
		return res, Token{}, "", err
	}
	t.UserID = res.User.ID
	return res, t, secret, nil
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

// SameIdentity reports whether the stored identity known already holds
// what id says. Claims are compared by their JSON, as they are stored; a
// difference only a round trip makes (a float's last digit) costs one
// needless write, never a missed one.
func SameIdentity(known, id Identity) bool {
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
	var out []Identity
	err := c.call(ctx, "identities", func(ctx context.Context) (err error) {
		out, err = c.store.Identities(ctx, userID)
		return err
	})
	if out == nil {
		out = []Identity{}
	}
	return out, err
}
