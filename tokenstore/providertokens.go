package tokenstore

import (
	"context"
	"encoding/json"
)

// providerTokensPlace names the sealed provider tokens of a record in
// bucket, for the associated data: tokens sealed for one token or session
// do not open as another's.
func providerTokensPlace(bucket string) string { return bucket + ".providerTokens" }

// sealProviderTokens seals pt for the record id of bucket. Without a
// Sealer, or without tokens, it keeps nothing: an IdP's tokens are never
// stored in plain text.
func (c *Core) sealProviderTokens(bucket, id string, pt ProviderTokens) []byte {
	if c.opts.Sealer == nil || pt.IsZero() {
		return nil
	}
	return c.opts.Sealer.Seal(providerTokensPlace(bucket), []byte(id), mustJSON(pt))
}

// openProviderTokens opens what sealProviderTokens sealed for the record
// id of bucket.
func (c *Core) openProviderTokens(bucket, id string, sealed []byte) (ProviderTokens, error) {
	var pt ProviderTokens
	if len(sealed) == 0 {
		return pt, nil
	}
	if c.opts.Sealer == nil {
		return pt, ErrSealed
	}
	plain, _, err := c.opts.Sealer.Open(providerTokensPlace(bucket), []byte(id), sealed)
	if err != nil {
		return pt, err
	}
	err = json.Unmarshal(plain, &pt)
	return pt, err
}

// resealProviderTokens moves t's provider tokens to the session
// sessionID. Tokens that do not open are dropped: the session opens
// without them rather than not at all.
func (c *Core) resealProviderTokens(t Token, sessionID string) []byte {
	pt, err := c.openProviderTokens(bucketTokens, t.ID, t.ProviderTokens)
	if err != nil {
		return nil
	}
	return c.sealProviderTokens(bucketSessions, sessionID, pt)
}

// ProviderTokens opens the IdP's tokens s carries. A session without them
// gives the zero ProviderTokens; sealed ones that do not open (another
// key, or moved from another session) give ErrSealed or ErrSealBroken.
func (c *Core) ProviderTokens(s Session) (ProviderTokens, error) {
	return c.openProviderTokens(bucketSessions, s.ID, s.ProviderTokens)
}

// UpdateSession is Appwrite's updateSession on the user's live session:
// it pushes the expiry out by the session duration from now and, when
// refreshed is not nil, replaces the IdP's tokens with it (sealed again
// for the session). It returns the session as stored. An unknown, expired
// or other user's session gives ErrSessionNotFound.
func (c *Core) UpdateSession(ctx context.Context, userID, sessionID string, refreshed *ProviderTokens) (Session, error) {
	var s Session
	now := c.now()
	err := c.store.Update(ctx, func(tx Tx) (err error) {
		s, err = getSession(tx, sessionID)
		if err == nil && (s.UserID != userID || now.After(s.Expire)) {
			return ErrSessionNotFound
		}
		if err != nil {
			return err
		}
		s.UpdatedAt, s.Expire = now, now.Add(c.opts.SessionDuration)
		if refreshed != nil {
			s.ProviderTokens = c.sealProviderTokens(bucketSessions, s.ID, *refreshed)
		}
		return c.insertSession(tx, s) // the same keys, under the new expiry
	})
	return s, err
}
