package postgres

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/handoffd/handoff/tokenstore"
)

// identityColumns are handoff_identities' columns in the order of
// identityRow.dest and identityArgs.
const identityColumns = "provider, subject, user_id, email, email_verified, phone, name, claims, created_at, updated_at"

const (
	qIdentity   = "SELECT " + identityColumns + " FROM handoff_identities WHERE provider = $1 AND subject = $2"
	qIdentities = "SELECT " + identityColumns + " FROM handoff_identities WHERE user_id = $1 ORDER BY provider, subject"
	// qIdentityInsert links a new identity; a (provider, subject) already
	// linked is a unique violation, which fails the step.
	qIdentityInsert = "INSERT INTO handoff_identities (" + identityColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	// qIdentityLink links an identity, replacing the link of the same
	// (provider, subject) but keeping its created_at. The foreign key
	// refuses a user that does not exist (and waits for one being
	// deleted).
	qIdentityLink = qIdentityInsert + " ON CONFLICT (provider, subject) DO UPDATE SET user_id = EXCLUDED.user_id, " +
		"email = EXCLUDED.email, email_verified = EXCLUDED.email_verified, phone = EXCLUDED.phone, name = EXCLUDED.name, " +
		"claims = EXCLUDED.claims, updated_at = EXCLUDED.updated_at RETURNING created_at"
)

// A known identity's sign-in is one round trip: BEGIN, then qSignInKnown,
// which finds the identity and locks its user's row (the user first, as
// every step of a user does, so a racing DeleteUser queues instead of
// deadlocking), then the
// identity's update, the mint's eviction and INSERT, then COMMIT, all in
// one pipelined batch. The statements after the first cannot take the
// user's id as a parameter (it is not known when the batch is sent), so
// the first leaves it in two transaction-local settings: signInUser, the
// identity's user, and signInMinter, that user when it is active (empty
// otherwise). The statements that follow read them, so when the identity
// is unknown (or its user is blocked) they do nothing, even if a
// concurrent sign-in links the identity meanwhile. READ COMMITTED gives
// each statement a snapshot taken after the locks of the first, so the
// eviction sees every token of the user's earlier steps (see doc.go).
const (
	signInUser   = "NULLIF(current_setting('handoff.signin_user', true), '')"
	signInMinter = "NULLIF(current_setting('handoff.signin_mint', true), '')"

	qSignInKnown = "SELECT set_config('handoff.signin_user', x.uid, true), " +
		"set_config('handoff.signin_mint', CASE WHEN x.active THEN x.uid ELSE '' END, true), x.* FROM (" +
		"SELECT u.id AS uid, u.status AS active, " + userColumnsOf + ", " + identityColumnsOf +
		" FROM handoff_identities i JOIN handoff_users u ON u.id = i.user_id WHERE i.provider = $1 AND i.subject = $2" +
		" FOR NO KEY UPDATE OF u) x"
	// qSignInUpdate writes the identity's fields when they differ from
	// what the provider says now (claims compared as jsonb, a NULL as
	// empty) and returns the identity as stored then.
	qSignInUpdate = "UPDATE handoff_identities SET email = $3, email_verified = $4, phone = $5, name = $6, claims = $7, updated_at = $8 " +
		"WHERE provider = $1 AND subject = $2 AND user_id = " + signInUser +
		" AND ((email, email_verified, phone, name) IS DISTINCT FROM ($3::text, $4::boolean, $5::text, $6::text) " +
		"OR coalesce(claims, '{}') IS DISTINCT FROM coalesce($7::jsonb, '{}')) " +
		"RETURNING " + identityColumns
)

// identityColumnsOf is identityColumns qualified by the table alias i.
const identityColumnsOf = "i.provider, i.subject, i.user_id, i.email, i.email_verified, i.phone, i.name, i.claims, i.created_at, i.updated_at"

// qSignInEvict and qSignInMint are Mint's statements (qTokensEvict,
// qTokenInsert) with the user's id ($1) read from signInMinter when $1 is
// NULL, so Mint's rules have one definition.
var (
	userParam    = regexp.MustCompile(`\$1\b`)
	signInMintID = "coalesce($1::text, " + signInMinter + ")"
	qSignInEvict = userParam.ReplaceAllLiteralString(qTokensEvict, signInMintID)
	qSignInMint  = userParam.ReplaceAllLiteralString(qTokenInsert, signInMintID)
)

// identityRow receives a row of identityColumns.
type identityRow struct{ id tokenstore.Identity }

func (r *identityRow) dest() []any {
	id := &r.id
	return []any{&id.Provider, &id.Subject, &id.UserID, &id.Email, &id.EmailVerified, &id.Phone, &id.Name,
		&id.Claims, &id.CreatedAt, &id.UpdatedAt}
}

func (r *identityRow) identity() tokenstore.Identity {
	id := r.id
	id.CreatedAt, id.UpdatedAt = id.CreatedAt.UTC(), id.UpdatedAt.UTC()
	return id
}

// identityArgs are id's values in identityColumns order.
func identityArgs(id tokenstore.Identity) []any {
	return []any{id.Provider, id.Subject, id.UserID, id.Email, id.EmailVerified, id.Phone, id.Name,
		claimsArg(id.Claims), id.CreatedAt, id.UpdatedAt}
}

// claimsArg is claims for a jsonb parameter: a nil map is NULL.
func claimsArg(claims map[string]any) any {
	if claims == nil {
		return nil
	}
	return claims
}

// Identity implements tokenstore.Store.
func (s *Store) Identity(ctx context.Context, provider, subject string) (tokenstore.Identity, error) {
	var (
		id    tokenstore.Identity
		found bool
	)
	err := s.read(ctx, "identity", func(t *txn) error {
		found = false
		t.queue(qIdentity, provider, subject).QueryRow(func(row pgx.Row) error {
			var r identityRow
			err := row.Scan(r.dest()...)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			id, found = r.identity(), err == nil
			return err
		})
		return nil
	})
	switch {
	case err != nil:
		return tokenstore.Identity{}, err
	case !found:
		return tokenstore.Identity{}, tokenstore.ErrNotFound
	}
	return id, nil
}

// LinkIdentity implements tokenstore.Store in one statement
// (qIdentityLink).
func (s *Store) LinkIdentity(ctx context.Context, id tokenstore.Identity) (tokenstore.Identity, error) {
	var created time.Time
	err := s.write(ctx, "link identity", func(t *txn) error {
		t.queue(qIdentityLink, identityArgs(id)...).QueryRow(func(row pgx.Row) error { return row.Scan(&created) })
		return nil
	})
	switch {
	case violatesForeignKey(err):
		return tokenstore.Identity{}, tokenstore.ErrUserNotFound
	case err != nil:
		return tokenstore.Identity{}, err
	}
	id.CreatedAt = created.UTC()
	return id, nil
}

// Identities implements tokenstore.Store.
func (s *Store) Identities(ctx context.Context, userID string) ([]tokenstore.Identity, error) {
	var out []tokenstore.Identity
	err := s.read(ctx, "identities", func(t *txn) error {
		out = []tokenstore.Identity{}
		t.queue(qIdentities, userID).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var r identityRow
				if err := rows.Scan(r.dest()...); err != nil {
					return err
				}
				out = append(out, r.identity())
			}
			return rows.Err()
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errSignInRace is a first sign-in that lost to a concurrent step: the
// identity was linked, or the new user's id, email or phone taken, after
// it looked. SignIn runs again once; the identity is then known.
var errSignInRace = errors.New("postgres: sign in raced another")

// SignIn implements tokenstore.Store. A known identity costs one round
// trip (signInKnown). An unknown one costs two more (signInNew), in a
// transaction whose inserts a concurrent first sign-in of the same
// identity (or of the same email or phone) makes fail on a unique index:
// the step then runs once more from the start, and resolves to what the
// winner stored.
func (s *Store) SignIn(ctx context.Context, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	for try := 0; ; try++ {
		res, known, err := s.signInKnown(ctx, in)
		if err != nil || known {
			return res, err
		}
		res, err = s.signInNew(ctx, in)
		switch {
		case err == nil:
			return res, nil
		case !errors.Is(err, errSignInRace) && !violates(err, ""):
			return tokenstore.SignInResult{}, err
		case try > 0:
			// A second loss is no race of this identity: the new user's
			// id is taken.
			return tokenstore.SignInResult{}, tokenstore.ErrUserExists
		}
	}
}

// signInKnown is the sign-in of a known identity, in one round trip; known
// is false when the identity is not (or no longer) linked, and then
// nothing changed.
func (s *Store) signInKnown(ctx context.Context, in tokenstore.SignIn) (res tokenstore.SignInResult, known bool, err error) {
	id := in.Identity
	err = s.write(ctx, "sign in", func(t *txn) error {
		res, known = tokenstore.SignInResult{}, false
		t.queue(qSignInKnown, id.Provider, id.Subject).QueryRow(func(row pgx.Row) error {
			var (
				setUser, setMint, uid string
				active                bool
				u                     userRow
				i                     identityRow
			)
			dest := append([]any{&setUser, &setMint, &uid, &active}, u.dest()...)
			err := row.Scan(append(dest, i.dest()...)...)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			res.User, res.Identity, known = u.user(), i.identity(), err == nil
			return err
		})
		t.queue(qSignInUpdate, id.Provider, id.Subject, id.Email, id.EmailVerified, id.Phone, id.Name,
			claimsArg(id.Claims), id.UpdatedAt).QueryRow(func(row pgx.Row) error {
			var i identityRow
			err := row.Scan(i.dest()...)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			res.Identity = i.identity()
			return err
		})
		if in.Token != nil {
			args := tokenArgs(*in.Token)
			args[0] = nil // the user is signInMinter's
			t.queue(qSignInEvict, nil, sqlNow(in.Now), max(in.Keep, 0))
			t.queue(qSignInMint, args...).Exec(func(tag pgconn.CommandTag) error {
				res.Minted = tag.RowsAffected() == 1
				return nil
			})
		}
		return nil
	})
	if err != nil || !known {
		return tokenstore.SignInResult{}, false, err
	}
	return res, true, nil
}

// The reads of a first sign-in, in its transaction's first round trip.
const (
	qSignInLinked = "SELECT EXISTS (SELECT 1 FROM handoff_identities WHERE provider = $1 AND subject = $2)"
	// qSignInOwner locks the user that owns the identity's email, so it
	// cannot go (or change) before the link commits.
	qSignInOwner     = qUserByEmail + " FOR NO KEY UPDATE"
	qSignInPhoneHeld = "SELECT EXISTS (SELECT 1 FROM handoff_users WHERE phone = $1)"
	qEmailVerified   = "UPDATE handoff_users SET email_verification = true, updated_at = $2 WHERE id = $1"
)

// signInNew is the sign-in of an identity that was not known: in a
// transaction, read whether it is linked by now, the owner of its email
// and whether its phone is held (one round trip), then link it to the
// owner or to a new user and mint, with the COMMIT (another). A concurrent
// first sign-in that got there first makes it fail with errSignInRace or
// a unique violation, having changed nothing.
func (s *Store) signInNew(ctx context.Context, in tokenstore.SignIn) (tokenstore.SignInResult, error) {
	id := in.Identity
	var res tokenstore.SignInResult
	err := s.write(ctx, "sign in", func(t *txn) error {
		res = tokenstore.SignInResult{}
		var (
			linked, phoneHeld, owned bool
			owner                    tokenstore.User
		)
		t.queue(qSignInLinked, id.Provider, id.Subject).QueryRow(func(row pgx.Row) error { return row.Scan(&linked) })
		if id.Email != "" {
			queueUser(t, qSignInOwner, &owner, &owned, id.Email)
		}
		if in.NewUser.Phone != "" && in.Policy.Create {
			t.queue(qSignInPhoneHeld, in.NewUser.Phone).QueryRow(func(row pgx.Row) error { return row.Scan(&phoneHeld) })
		}
		if err := t.send(); err != nil {
			return err
		}
		switch {
		case linked:
			return errSignInRace
		case owned && in.Policy.LinkByEmail && id.EmailVerified:
			res.User = owner
			if !owner.EmailVerification && strings.EqualFold(owner.Email, id.Email) {
				res.User.EmailVerification, res.User.UpdatedAt = true, id.UpdatedAt
				t.queue(qEmailVerified, owner.ID, id.UpdatedAt)
			}
		case owned && in.Policy.Create:
			return tokenstore.ErrEmailExists
		case !in.Policy.Create:
			return tokenstore.ErrIdentityUnlinked
		default:
			res.User, res.Created = in.NewUser, true
			if phoneHeld {
				res.User.Phone = "" // a phone another user holds is not copied
			}
			t.queue(qUserInsert, userArgs(res.User)...)
		}
		res.Identity = id
		res.Identity.UserID = res.User.ID
		t.queue(qIdentityInsert, identityArgs(res.Identity)...)
		if in.Token != nil && res.User.Status {
			tok := *in.Token
			tok.UserID = res.User.ID
			queueMint(t, tok, in.Keep, in.Now, &res.Minted)
		}
		return nil
	})
	if err != nil {
		return tokenstore.SignInResult{}, err
	}
	return res, nil
}

// codeForeignKey is foreign_key_violation.
const codeForeignKey = "23503"

// violatesForeignKey reports whether err is a foreign key violation: a
// row that names a user who does not exist.
func violatesForeignKey(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeForeignKey
}
