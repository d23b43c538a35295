package tokenstore

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxListTotal caps the total a user list reports, as Appwrite does.
const MaxListTotal = 5000

// Bounds of the text a user or an identity holds.
const (
	MaxNameLength    = 128      // characters of a user's name, as Appwrite's
	MaxEmailLength   = 254      // bytes of an email (RFC 5321's path limit)
	MaxPhoneLength   = 64       // bytes of an identity's phone (E.164 needs 16; IdPs format theirs)
	MaxSubjectLength = 1024     // bytes of an identity's subject
	MaxClaimsSize    = 32 << 10 // bytes of an identity's claims as JSON
)

// The reasons of the user checks, worded as Appwrite's validators.
const (
	reasonName  = "Value must be a valid string and no longer than 128 chars"
	reasonEmail = "Value must be a valid email address"
	reasonPhone = "Phone number must start with a '+' can have a maximum of fifteen digits."
)

// ValidText reports whether s may be shown as a name or an address: valid
// UTF-8 without control characters (C0 with tab and newline, DEL, C1),
// line or paragraph separators (U+2028, U+2029), or the bidi embeddings,
// overrides and isolates (U+202A..U+202E, U+2066..U+2069) that make text
// display in another order than it is stored, the trick of a spoofed
// address in an admin console or a mail greeting. The marks LRM, RLM and
// ALM and the joiners ZWJ and ZWNJ, which real names in right-to-left and
// Indic scripts and emoji need, are allowed.
func ValidText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r), r == '\u2028', r == '\u2029',
			r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
			return false
		}
	}
	return true
}

// ValidName reports whether s may be a user's name: ValidText and at most
// MaxNameLength characters (not bytes: Appwrite counts characters too).
func ValidName(s string) bool {
	return ValidText(s) && utf8.RuneCountInString(s) <= MaxNameLength
}

// checkUserText refuses a name, email or phone of u that changed from old
// and is not text a user may hold. The format of an email or phone is the
// caller's to check; this only keeps bad bytes out of the store.
func checkUserText(u, old User) error {
	switch {
	case u.Name != old.Name && !ValidName(u.Name):
		return &ArgumentError{Param: "name", Reason: reasonName}
	case u.Email != old.Email && (len(u.Email) > MaxEmailLength || !ValidText(u.Email)):
		return &ArgumentError{Param: "email", Reason: reasonEmail}
	case u.Phone != old.Phone && (len(u.Phone) > MaxPhoneLength || !ValidText(u.Phone)):
		return &ArgumentError{Param: "phone", Reason: reasonPhone}
	}
	return nil
}

// ValidID reports whether id is a valid custom id: 1 to 36 characters of
// a-z, A-Z, 0-9, '.', '_' and '-', not starting with one of the last three.
func ValidID(id string) bool {
	if id == "" || len(id) > 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// CreateUser creates a user. An id, email or phone already taken gives
// ErrUserExists; a name, email or phone that is not ValidText, or a name
// over MaxNameLength characters, gives an ArgumentError.
func (c *Core) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	if nu.ID == "" || nu.ID == "unique()" {
		nu.ID = NewID()
	}
	if !ValidID(nu.ID) {
		return User{}, &ArgumentError{Param: "userId", Reason: "Parameter must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, period, hyphen, and underscore. Can't start with a special char"}
	}
	// Checked before lower-casing, which turns bad bytes into U+FFFD.
	if err := checkUserText(User{Name: nu.Name, Email: nu.Email, Phone: nu.Phone}, User{}); err != nil {
		return User{}, err
	}
	now := c.now()
	u := User{
		ID:                nu.ID,
		Name:              nu.Name,
		Email:             strings.ToLower(nu.Email),
		Phone:             nu.Phone,
		EmailVerification: nu.EmailVerification,
		Status:            true,
		CreatedAt:         now,
		UpdatedAt:         now,
	}
	err := c.call(ctx, "create_user", func(ctx context.Context) error { return c.store.CreateUser(ctx, u) })
	return u, err
}

// GetUser returns the user with id, or ErrUserNotFound.
func (c *Core) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	err := c.call(ctx, "user", func(ctx context.Context) (err error) { u, err = c.store.User(ctx, id); return err })
	return u, err
}

// FindUserByEmail returns the user owning email, or ErrUserNotFound.
func (c *Core) FindUserByEmail(ctx context.Context, email string) (User, error) {
	var u User
	err := c.call(ctx, "user_by_email", func(ctx context.Context) (err error) {
		u, err = c.store.UserByEmail(ctx, strings.ToLower(email))
		return err
	})
	return u, err
}

// UpdateUser applies change to the user with id and stores the result,
// keeping the email and phone unique. A name, email or phone the change
// sets to text no user may hold gives an ArgumentError. change may run
// more than once and must have no other effect.
func (c *Core) UpdateUser(ctx context.Context, id string, change func(*User) error) (User, error) {
	var out User
	err := c.call(ctx, "update_user", func(ctx context.Context) (err error) {
		out, err = c.store.UpdateUser(ctx, id, func(u *User) error {
			old := *u
			u.Labels = slices.Clone(old.Labels)
			if err := change(u); err != nil {
				return err
			}
			u.ID, u.CreatedAt = old.ID, old.CreatedAt
			if err := checkUserText(*u, old); err != nil {
				return err
			}
			u.Email = strings.ToLower(u.Email)
			u.UpdatedAt = c.now()
			return nil
		})
		return err
	})
	return out, err
}

// DeleteUser deletes a user with everything it owns: tokens, sessions
// and identities.
func (c *Core) DeleteUser(ctx context.Context, id string) error {
	return c.call(ctx, "delete_user", func(ctx context.Context) error { return c.store.DeleteUser(ctx, id) })
}

// Filter is one equal query: the attribute must equal one of Values.
type Filter struct {
	Attribute string
	Values    []string
}

// UserQuery selects a page of users, in creation order.
type UserQuery struct {
	Equal       []Filter
	Search      string // every word must appear in id, email, name or phone
	Limit       int    // default 25
	Offset      int
	CursorAfter string // a user id; the page starts after it
	NoTotal     bool   // skip counting (total reports 0)
}

// UserAttributes are the attributes Filter may name.
var UserAttributes = []string{"$id", "name", "email", "phone", "status", "emailVerification", "phoneVerification", "labels", "registration", "$createdAt", "$updatedAt", "accessedAt"}

func userAttr(u User, attr string) ([]string, bool) {
	switch attr {
	case "$id":
		return []string{u.ID}, true
	case "name":
		return []string{u.Name}, true
	case "email":
		return []string{u.Email}, true
	case "phone":
		return []string{u.Phone}, true
	case "status":
		return []string{strconv.FormatBool(u.Status)}, true
	case "emailVerification":
		return []string{strconv.FormatBool(u.EmailVerification)}, true
	case "phoneVerification":
		return []string{strconv.FormatBool(u.PhoneVerification)}, true
	case "labels":
		return u.Labels, true
	case "registration", "$createdAt":
		return []string{FormatTime(u.CreatedAt)}, true
	case "$updatedAt":
		return []string{FormatTime(u.UpdatedAt)}, true
	case "accessedAt":
		return []string{FormatTime(u.AccessedAt)}, true
	}
	return nil, false
}

func (q UserQuery) matches(u User) bool {
	for _, f := range q.Equal {
		have, _ := userAttr(u, f.Attribute)
		if !slices.ContainsFunc(have, func(h string) bool { return slices.Contains(f.Values, h) }) {
			return false
		}
	}
	if q.Search != "" {
		hay := strings.ToLower(u.ID + " " + u.Email + " " + u.Name + " " + u.Phone)
		for _, w := range strings.Fields(strings.ToLower(q.Search)) {
			if !strings.Contains(hay, w) {
				return false
			}
		}
	}
	return true
}

// ListUsers returns one page of the users q selects and the total number
// selected (capped at MaxListTotal).
func (c *Core) ListUsers(ctx context.Context, q UserQuery) ([]User, int, error) {
	for _, f := range q.Equal {
		if _, ok := userAttr(User{}, f.Attribute); !ok {
			return nil, 0, &ArgumentError{Param: "queries", Reason: "Attribute not found in schema: " + f.Attribute}
		}
	}
	if q.Limit <= 0 {
		q.Limit = 25
	}
	page := []User{}
	total := 0
	// The total counts the users before the cursor too, so unless it is
	// skipped the scan starts at the first user and the page at the
	// cursor.
	from := ""
	if q.NoTotal {
		from = q.CursorAfter
	}
	err := c.call(ctx, "scan_users", func(ctx context.Context) error {
		page, total = page[:0], 0
		skipped := 0
		inPage := q.CursorAfter == "" || from != ""
		err := c.store.ScanUsers(ctx, from, func(u User) bool {
			cursor := !inPage && u.ID == q.CursorAfter
			inPage = inPage || cursor
			if !q.matches(u) {
				return true
			}
			if total < MaxListTotal {
				total++
			}
			if inPage && !cursor && len(page) < q.Limit {
				if skipped < q.Offset {
					skipped++
				} else {
					page = append(page, u)
				}
			}
			return !(q.NoTotal && len(page) == q.Limit) && !(inPage && total == MaxListTotal && len(page) == q.Limit)
		})
		if err == nil && !inPage {
			return ErrCursorNotFound
		}
		return err
	})
	if q.NoTotal {
		total = 0
	}
	return page, total, err
}

// FormatTime formats t as Appwrite does: milliseconds and a numeric offset,
// in UTC ("2020-10-15T06:38:00.000+00:00"). The zero time is "".
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000-07:00")
}
