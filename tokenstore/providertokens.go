package tokenstore

import (
	"context"
	"encoding/json"
)

// The places secrets are sealed for, in the associated data of their
// seals (see Sealer): the names of the v1 buckets that held them, kept so
// a store sealed then still opens.
const (
	placeMeta     = "meta"
	placeTokens   = "tokens"
	placeSessions = "sessions"
)

// providerTokensPlace names the sealed provider tokens of a record at
// place, for the associated data: tokens sealed for one session do not
// open as another's.
func providerTokensPlace(place string) string { return place + ".providerTokens" }

// sealProviderTokens seals pt for the record id at place. Without a
// Sealer, or without tokens, it keeps nothing: an IdP's tokens are never
// stored in plain text.
func (c *Core) sealProviderTokens(place, id string, pt ProviderTokens) []byte {
	if c.opts.Sealer == nil || pt.IsZero() {
		return nil
	}
	return c.opts.Sealer.Seal(providerTokensPlace(place), []byte(id), mustJSON(pt))
}

// openProviderTokens opens what sealProviderTokens sealed for the record
// id at place.
func (c *Core) openProviderTokens(place, id string, sealed []byte) (ProviderTokens, error) {
	var pt ProviderTokens
	if len(sealed) == 0 {
		return pt, nil
	}
	if c.opts.Sealer == nil {
		return pt, ErrSealed
	}
	plain, _, err := c.opts.Sealer.Open(providerTokensPlace(place), []byte(id), sealed)
	if err != nil {
		return pt, err
	}
	err = json.Unmarshal(plain, &pt)
	return pt, err
}

// ProviderTokens opens the IdP's tokens s carries. A session without them
// gives the zero ProviderTokens; sealed ones that do not open (another
// key, or moved from another session) give ErrSealed or ErrSealBroken.
func (c *Core) ProviderTokens(s Session) (ProviderTokens, error) {
	return c.openProviderTokens(placeSessions, s.ID, s.ProviderTokens)
}

// UpdateSession is Appwrite's updateSession on the user's live session:
// it pushes the expiry out by the session duration from now and, when
// refreshed is not nil, replaces the IdP's tokens with it (sealed again
// for the session). It returns the session as stored. An unknown, expired
// or other user's session gives ErrSessionNotFound.
func (c *Core) UpdateSession(ctx context.Context, userID, sessionID string, refreshed *ProviderTokens) (Session, error) {
	now := c.now()
	var s Session
	err := c.call(ctx, "update_session", func(ctx context.Context) (err error) {
		s, err = c.store.UpdateSession(ctx, userID, sessionID, func(s *Session) error {
			if now.After(s.Expire) {
				return ErrSessionNotFound
			}
			s.UpdatedAt, s.Expire = now, now.Add(c.opts.SessionDuration)
			if refreshed != nil {
				s.ProviderTokens = c.sealProviderTokens(placeSessions, s.ID, *refreshed)
			}
			return nil
		})
		return err
	})
	return s, err
}
