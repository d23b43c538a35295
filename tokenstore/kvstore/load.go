package kvstore

import (
	"context"

	"github.com/handoffd/handoff/tokenstore"
)

var _ tokenstore.Loader = (*Store)(nil)

// Load stores new users with their sessions and tokens in one Update,
// with every index a step would write but no rule applied (see
// tokenstore.Loader). An id, email or phone already held gives
// ErrUserExists and stores nothing.
func (s *Store) Load(ctx context.Context, users []tokenstore.User, sessions []tokenstore.Session, tokens []tokenstore.Token) error {
	return s.b.Update(ctx, func(tx Tx) error {
		for _, u := range users {
			if err := insertUser(tx, u); err != nil {
				return err
			}
		}
		for _, sess := range sessions {
			if err := putSession(tx, sess); err != nil {
				return err
			}
		}
		for _, t := range tokens {
			if err := tx.Put(bucketUserData, tokenKey(t.UserID, t.Hash), encodeToken(t), t.Expire); err != nil {
				return err
			}
		}
		return nil
	})
}
