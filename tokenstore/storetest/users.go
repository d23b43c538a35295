package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

var userTests = []test{
	{"Create", testUserCreate},
	{"Duplicates", testUserDuplicates},
	{"InvalidID", testUserInvalidID},
	{"GeneratedID", testUserGeneratedID},
	{"Update", testUserUpdate},
	{"List", testUserList},
	{"Delete", testUserDelete},
}

var identityTests = []test{
	{"CreateAndFind", testIdentityCreate},
	{"Policy", testIdentityPolicy},
	{"VerifiedEmail", testIdentityVerifiedEmail},
	{"Link", testIdentityLink},
}

func testUserCreate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	now := e.clock.Now()
	u, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "alice", Email: "Alice@Example.COM", Phone: "+15550100", Name: "Alice", EmailVerification: true})
	must(t, "CreateUser", err)
	if u.ID != "alice" || u.Email != "alice@example.com" || u.Phone != "+15550100" || u.Name != "Alice" ||
		!u.EmailVerification || !u.Status || !u.CreatedAt.Equal(now) || !u.UpdatedAt.Equal(now) {
		t.Fatalf("CreateUser = %+v", u)
	}
	got, err := e.core.GetUser(e.ctx, "alice")
	must(t, "GetUser", err)
	if got.ID != u.ID || got.Email != u.Email || got.Phone != u.Phone || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("GetUser = %+v, want %+v", got, u)
	}
	for _, email := range []string{"alice@example.com", "ALICE@example.com"} {
		got, err = e.core.FindUserByEmail(e.ctx, email)
		must(t, "FindUserByEmail("+email+")", err)
		if got.ID != "alice" {
			t.Fatalf("FindUserByEmail(%s) = %q", email, got.ID)
		}
	}
	_, err = e.core.GetUser(e.ctx, "bob")
	wantIs(t, "GetUser of an unknown id", err, tokenstore.ErrUserNotFound)
	_, err = e.core.FindUserByEmail(e.ctx, "bob@example.com")
	wantIs(t, "FindUserByEmail of an unknown email", err, tokenstore.ErrUserNotFound)
}

func testUserDuplicates(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "alice", Email: "alice@example.com", Phone: "+15550100"})
	must(t, "CreateUser", err)
	for _, tc := range []struct {
		name string
		nu   tokenstore.NewUser
	}{
		{"same id", tokenstore.NewUser{ID: "alice", Email: "other@example.com"}},
		{"same email", tokenstore.NewUser{ID: "u2", Email: "alice@example.com"}},
		{"same email other case", tokenstore.NewUser{ID: "u3", Email: "ALICE@EXAMPLE.com"}},
		{"same phone", tokenstore.NewUser{ID: "u4", Email: "free@example.com", Phone: "+15550100"}},
		{"same id, free email and phone", tokenstore.NewUser{ID: "alice", Email: "free2@example.com", Phone: "+15550199"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.core.CreateUser(e.ctx, tc.nu)
			wantIs(t, "CreateUser", err, tokenstore.ErrUserExists)
			if tc.nu.ID != "alice" {
				_, err = e.core.GetUser(e.ctx, tc.nu.ID)
				wantIs(t, "GetUser of the refused user", err, tokenstore.ErrUserNotFound)
			}
		})
	}
	// The refused creations left no index entries behind: their free
	// email and phone are still free.
	for _, nu := range []tokenstore.NewUser{
		{ID: "u5", Email: "free@example.com"},
		{ID: "u6", Email: "free2@example.com", Phone: "+15550199"},
		{ID: "u7", Email: "other@example.com"},
	} {
		_, err := e.core.CreateUser(e.ctx, nu)
		must(t, "CreateUser with the email a refused user named", err)
	}
	if _, total, err := e.core.ListUsers(e.ctx, tokenstore.UserQuery{}); err != nil || total != 4 {
		t.Fatalf("ListUsers total = %d, %v; want 4", total, err)
	}
}

func testUserInvalidID(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for _, id := range []string{"-abc", "_abc", ".abc", "a b", "a/b", "ü", strings.Repeat("a", 37)} {
		_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: id})
		wantIs(t, "CreateUser("+id+")", err, tokenstore.ErrInvalidArgument)
	}
	_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: strings.Repeat("a", 36)})
	must(t, "CreateUser with a 36-character id", err)
}

func testUserGeneratedID(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	a, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{})
	must(t, "CreateUser", err)
	b, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "unique()"})
	must(t, "CreateUser", err)
	if len(a.ID) != 20 || len(b.ID) != 20 || a.ID == b.ID || !tokenstore.ValidID(a.ID) {
		t.Fatalf("generated ids %q and %q", a.ID, b.ID)
	}
}

func testUserUpdate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	e.clock.Advance(time.Minute)
	u, err := e.core.UpdateUser(e.ctx, "u1", func(u *tokenstore.User) error {
		u.Email = "New@Example.com"
		u.Phone = "+15550111"
		u.Labels = []string{"admin"}
		u.ID = "hijack" // ignored
		return nil
	})
	must(t, "UpdateUser", err)
	if u.ID != "u1" || u.Email != "new@example.com" || !u.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("UpdateUser = %+v", u)
	}
	_, err = e.core.FindUserByEmail(e.ctx, "u1@example.com")
	wantIs(t, "FindUserByEmail of the old email", err, tokenstore.ErrUserNotFound)
	got, err := e.core.FindUserByEmail(e.ctx, "new@example.com")
	must(t, "FindUserByEmail of the new email", err)
	if got.ID != "u1" || !slices.Equal(got.Labels, []string{"admin"}) {
		t.Fatalf("FindUserByEmail = %+v", got)
	}
	_, err = e.core.UpdateUser(e.ctx, "u2", func(u *tokenstore.User) error { u.Email = "NEW@example.com"; return nil })
	wantIs(t, "UpdateUser to a taken email", err, tokenstore.ErrUserExists)
	_, err = e.core.UpdateUser(e.ctx, "u2", func(u *tokenstore.User) error { u.Phone = "+15550111"; return nil })
	wantIs(t, "UpdateUser to a taken phone", err, tokenstore.ErrUserExists)
	got, err = e.core.GetUser(e.ctx, "u2")
	must(t, "GetUser", err)
	if got.Email != "u2@example.com" || got.Phone != "" {
		t.Fatalf("a refused update changed the user: %+v", got)
	}
	errStop := errors.New("stop")
	_, err = e.core.UpdateUser(e.ctx, "u2", func(u *tokenstore.User) error { u.Name = "x"; return errStop })
	wantIs(t, "UpdateUser whose change fails", err, errStop)
	_, err = e.core.UpdateUser(e.ctx, "nobody", func(*tokenstore.User) error { return nil })
	wantIs(t, "UpdateUser of an unknown user", err, tokenstore.ErrUserNotFound)
	// The old email is free for someone else.
	_, err = e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "u3", Email: "u1@example.com"})
	must(t, "CreateUser with a released email", err)
}

func userIDs(us []tokenstore.User) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func testUserList(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	for _, nu := range []tokenstore.NewUser{
		{ID: "u1", Name: "Alice Smith", Email: "alice@example.com"},
		{ID: "u2", Name: "Bob Jones", Email: "bob@example.org", Phone: "+15550102"},
		{ID: "u3", Name: "Carol Smith", Email: "carol@example.com", EmailVerification: true},
		{ID: "u4", Name: "Dave", Email: "dave@example.net"},
		{ID: "u5", Name: "Eve Smith", Email: "eve@example.com"},
	} {
		_, err := e.core.CreateUser(e.ctx, nu)
		must(t, "CreateUser", err)
		e.clock.Advance(time.Second)
	}
	_, err := e.core.UpdateUser(e.ctx, "u4", func(u *tokenstore.User) error { u.Labels = []string{"vip"}; return nil })
	must(t, "UpdateUser", err)
	for _, tc := range []struct {
		name  string
		q     tokenstore.UserQuery
		want  []string
		total int
	}{
		{"all", tokenstore.UserQuery{}, []string{"u1", "u2", "u3", "u4", "u5"}, 5},
		{"equal name", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "name", Values: []string{"Bob Jones"}}}}, []string{"u2"}, 1},
		{"equal one of", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "email", Values: []string{"eve@example.com", "alice@example.com"}}}}, []string{"u1", "u5"}, 2},
		{"equal id", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "$id", Values: []string{"u3"}}}}, []string{"u3"}, 1},
		{"equal bool", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "emailVerification", Values: []string{"true"}}}}, []string{"u3"}, 1},
		{"equal label", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "labels", Values: []string{"vip"}}}}, []string{"u4"}, 1},
		{"two filters", tokenstore.UserQuery{Equal: []tokenstore.Filter{
			{Attribute: "status", Values: []string{"true"}},
			{Attribute: "phone", Values: []string{"+15550102"}},
		}}, []string{"u2"}, 1},
		{"no match", tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "name", Values: []string{"Zed"}}}}, []string{}, 0},
		{"search", tokenstore.UserQuery{Search: "smith"}, []string{"u1", "u3", "u5"}, 3},
		{"search words", tokenstore.UserQuery{Search: "SMITH example.com carol"}, []string{"u3"}, 1},
		{"limit", tokenstore.UserQuery{Limit: 2}, []string{"u1", "u2"}, 5},
		{"offset", tokenstore.UserQuery{Offset: 2}, []string{"u3", "u4", "u5"}, 5},
		{"limit and offset", tokenstore.UserQuery{Limit: 2, Offset: 1}, []string{"u2", "u3"}, 5},
		{"offset past the end", tokenstore.UserQuery{Offset: 9}, []string{}, 5},
		{"cursor", tokenstore.UserQuery{CursorAfter: "u2"}, []string{"u3", "u4", "u5"}, 5},
		{"cursor and limit", tokenstore.UserQuery{CursorAfter: "u2", Limit: 1}, []string{"u3"}, 5},
		{"cursor at the end", tokenstore.UserQuery{CursorAfter: "u5"}, []string{}, 5},
		{"cursor and search", tokenstore.UserQuery{CursorAfter: "u1", Search: "smith"}, []string{"u3", "u5"}, 3},
		{"no total", tokenstore.UserQuery{Limit: 2, NoTotal: true}, []string{"u1", "u2"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := e.core.ListUsers(e.ctx, tc.q)
			must(t, "ListUsers", err)
			if ids := userIDs(got); !slices.Equal(ids, tc.want) || total != tc.total {
				t.Fatalf("ListUsers(%+v) = %q total %d, want %q total %d", tc.q, ids, total, tc.want, tc.total)
			}
		})
	}
	_, _, err = e.core.ListUsers(e.ctx, tokenstore.UserQuery{CursorAfter: "nobody"})
	wantIs(t, "ListUsers with an unknown cursor", err, tokenstore.ErrCursorNotFound)
	_, _, err = e.core.ListUsers(e.ctx, tokenstore.UserQuery{Equal: []tokenstore.Filter{{Attribute: "password", Values: []string{"x"}}}})
	wantIs(t, "ListUsers with an unknown attribute", err, tokenstore.ErrInvalidArgument)
}

func testUserDelete(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	const doomed = "doomed-7f3a9c"
	e.user(doomed)
	e.user("bystander")
	_, err := e.core.UpdateUser(e.ctx, doomed, func(u *tokenstore.User) error { u.Phone = "+15550999"; return nil })
	must(t, "UpdateUser", err)
	_, secret := e.mint(doomed)
	sess, cred := e.session(doomed)
	jwt, err := e.core.IssueJWT(sess, 0)
	must(t, "IssueJWT", err)
	_, _, _ = e.core.Exchange(e.ctx, doomed, "0000", tokenstore.Client{}) // a failure counted on the token
	_, err = e.core.LinkIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "sub-doomed", UserID: doomed})
	must(t, "LinkIdentity", err)
	_, keepCred := e.session("bystander")

	must(t, "DeleteUser", e.core.DeleteUser(e.ctx, doomed))

	_, err = e.core.GetUser(e.ctx, doomed)
	wantIs(t, "GetUser", err, tokenstore.ErrUserNotFound)
	_, _, err = e.core.Exchange(e.ctx, doomed, secret, tokenstore.Client{})
	wantIs(t, "Exchange of the deleted user's token", err, tokenstore.ErrInvalidToken)
	e.wantAuth(cred, false)
	_, _, err = e.core.VerifyJWT(e.ctx, jwt)
	if err == nil {
		t.Fatal("VerifyJWT of the deleted user's JWT succeeded")
	}
	_, err = e.core.FindIdentity(e.ctx, "oidc", "sub-doomed")
	wantIs(t, "FindIdentity", err, tokenstore.ErrNotFound)
	if ids, err := e.core.ListIdentities(e.ctx, doomed); err != nil || len(ids) != 0 {
		t.Fatalf("ListIdentities = %v, %v", ids, err)
	}
	e.wantSessions(doomed, nil)
	// Nothing anywhere still names the user.
	if r, ok := findBytes(e.dump(), []byte(doomed)); ok {
		t.Fatalf("bucket %s still holds %q -> %q", r.Kind, r.Key, r.Value)
	}
	e.wantAuth(keepCred, true)
	wantIs(t, "DeleteUser again", e.core.DeleteUser(e.ctx, doomed), tokenstore.ErrUserNotFound)
	// Its email, phone and id are free again.
	_, err = e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: doomed, Email: doomed + "@example.com", Phone: "+15550999"})
	must(t, "CreateUser with the deleted user's id, email and phone", err)
}

func testIdentityCreate(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	in := tokenstore.Identity{Provider: "oidc", Subject: "sub-1", Email: "New@Example.com", EmailVerified: true, Name: "Newcomer",
		Claims: map[string]any{"hd": "example.com"}}
	u, created, err := e.core.ResolveIdentity(e.ctx, in, tokenstore.LinkPolicy{Create: true})
	must(t, "ResolveIdentity", err)
	if !created || u.Email != "new@example.com" || !u.EmailVerification || u.Name != "Newcomer" {
		t.Fatalf("ResolveIdentity = %+v, created %v", u, created)
	}
	id, err := e.core.FindIdentity(e.ctx, "oidc", "sub-1")
	must(t, "FindIdentity", err)
	if id.UserID != u.ID || id.Email != "New@Example.com" || id.Claims["hd"] != "example.com" {
		t.Fatalf("FindIdentity = %+v", id)
	}
	list, err := e.core.ListIdentities(e.ctx, u.ID)
	must(t, "ListIdentities", err)
	if len(list) != 1 || list[0].Subject != "sub-1" {
		t.Fatalf("ListIdentities = %+v", list)
	}
	// A known subject resolves to its user under any policy, and its
	// record is refreshed.
	in.Name = "Renamed"
	again, created, err := e.core.ResolveIdentity(e.ctx, in, tokenstore.LinkPolicy{})
	must(t, "ResolveIdentity of a known subject", err)
	if created || again.ID != u.ID {
		t.Fatalf("ResolveIdentity again = %q created %v, want %q", again.ID, created, u.ID)
	}
	if id, _ := e.core.FindIdentity(e.ctx, "oidc", "sub-1"); id.Name != "Renamed" || !id.CreatedAt.Equal(list[0].CreatedAt) {
		t.Fatalf("identity after a second resolve = %+v", id)
	}
	// Unchanged, it resolves from a read: the record is not rewritten.
	before, _ := e.core.FindIdentity(e.ctx, "oidc", "sub-1")
	same, created, err := e.core.ResolveIdentity(e.ctx, in, tokenstore.LinkPolicy{})
	must(t, "ResolveIdentity of an unchanged identity", err)
	if created || same.ID != u.ID || same.Name != u.Name {
		t.Fatalf("ResolveIdentity unchanged = %+v created %v, want user %q", same, created, u.ID)
	}
	if after, _ := e.core.FindIdentity(e.ctx, "oidc", "sub-1"); !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("an unchanged identity was rewritten: updatedAt %v, then %v", before.UpdatedAt, after.UpdatedAt)
	}
	// The same subject at another provider is another identity.
	_, err = e.core.FindIdentity(e.ctx, "other", "sub-1")
	wantIs(t, "FindIdentity at another provider", err, tokenstore.ErrNotFound)
}

func testIdentityPolicy(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	owner, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "owner", Email: "owner@example.com", Phone: "+15550100"})
	must(t, "CreateUser", err)
	var (
		link   = tokenstore.LinkPolicy{LinkByEmail: true}
		create = tokenstore.LinkPolicy{Create: true}
		both   = tokenstore.LinkPolicy{LinkByEmail: true, Create: true}
		none   = tokenstore.LinkPolicy{}
	)
	for _, tc := range []struct {
		name     string
		email    string
		verified bool
		policy   tokenstore.LinkPolicy
		want     string // "owner", "new", or "" for an error
		err      error
	}{
		{"verified email links", "owner@example.com", true, link, "owner", nil},
		{"verified email links before create", "owner@example.com", true, both, "owner", nil},
		{"email case is ignored", "OWNER@Example.com", true, link, "owner", nil},
		{"unverified email never links", "owner@example.com", false, both, "", tokenstore.ErrEmailExists},
		{"unverified email, no create", "owner@example.com", false, link, "", tokenstore.ErrIdentityUnlinked},
		{"taken email without linking", "owner@example.com", true, create, "", tokenstore.ErrEmailExists},
		{"nothing allowed", "owner@example.com", true, none, "", tokenstore.ErrIdentityUnlinked},
		{"unknown email, link only", "stranger@example.com", true, link, "", tokenstore.ErrIdentityUnlinked},
		{"unknown email, create", "stranger@example.com", false, create, "new", nil},
		{"no email, create", "", false, both, "new", nil},
		{"no email, no create", "", false, link, "", tokenstore.ErrIdentityUnlinked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, before, err := e.core.ListUsers(e.ctx, tokenstore.UserQuery{})
			must(t, "ListUsers", err)
			subject := "sub-" + tc.name
			u, created, err := e.core.ResolveIdentity(e.ctx, tokenstore.Identity{
				Provider: "oidc", Subject: subject, Email: tc.email, EmailVerified: tc.verified, Phone: "+15550100",
			}, tc.policy)
			_, after, _ := e.core.ListUsers(e.ctx, tokenstore.UserQuery{})
			switch tc.want {
			case "":
				wantIs(t, "ResolveIdentity", err, tc.err)
				_, err := e.core.FindIdentity(e.ctx, "oidc", subject)
				wantIs(t, "FindIdentity after a refusal", err, tokenstore.ErrNotFound)
				if after != before {
					t.Fatalf("a refused resolve changed the user count from %d to %d", before, after)
				}
			case "owner":
				must(t, "ResolveIdentity", err)
				if created || u.ID != owner.ID {
					t.Fatalf("ResolveIdentity = %q created %v, want the owner", u.ID, created)
				}
			case "new":
				must(t, "ResolveIdentity", err)
				if !created || u.ID == owner.ID || after != before+1 {
					t.Fatalf("ResolveIdentity = %q created %v (users %d -> %d), want a new user", u.ID, created, before, after)
				}
				if u.Phone != "" {
					t.Fatalf("the new user took the phone %q another user holds", u.Phone)
				}
				id, err := e.core.FindIdentity(e.ctx, "oidc", subject)
				must(t, "FindIdentity", err)
				if id.UserID != u.ID {
					t.Fatalf("identity links %q, want %q", id.UserID, u.ID)
				}
			}
		})
	}
	list, err := e.core.ListIdentities(e.ctx, owner.ID)
	must(t, "ListIdentities", err)
	if len(list) != 3 {
		t.Fatalf("owner has %d identities, want 3", len(list))
	}
}

// testIdentityVerifiedEmail: an IdP that vouches for the email
// (email_verified) leaves the user's emailVerification true, whether the
// identity creates the user or links to it by that email; one that does
// not vouch leaves it false, and a linked user's other fields stay.
func testIdentityVerifiedEmail(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	_, err := e.core.CreateUser(e.ctx, tokenstore.NewUser{ID: "owner", Email: "owner@example.com", Name: "Owner"})
	must(t, "CreateUser", err)
	both := tokenstore.LinkPolicy{LinkByEmail: true, Create: true}

	u, created, err := e.core.ResolveIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s-link", Email: "Owner@Example.com", EmailVerified: true}, both)
	must(t, "ResolveIdentity linking by a verified email", err)
	if created || u.ID != "owner" || !u.EmailVerification || u.Name != "Owner" || u.Email != "owner@example.com" {
		t.Fatalf("linked user = %+v created %v, want owner with emailVerification true", u, created)
	}
	stored, err := e.core.GetUser(e.ctx, "owner")
	must(t, "GetUser", err)
	if !stored.EmailVerification {
		t.Fatal("the linked user's emailVerification is false in the store")
	}

	u, created, err = e.core.ResolveIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s-new", Email: "new@example.com", EmailVerified: true}, both)
	must(t, "ResolveIdentity creating", err)
	if !created || !u.EmailVerification {
		t.Fatalf("created user = %+v, want emailVerification true", u)
	}
	u, created, err = e.core.ResolveIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s-unv", Email: "unvouched@example.com"}, both)
	must(t, "ResolveIdentity creating without a verified email", err)
	if !created || u.EmailVerification {
		t.Fatalf("created user = %+v, want emailVerification false", u)
	}
}

func testIdentityLink(t *testing.T, s *suite) {
	e := s.env(t, tokenstore.Options{})
	e.user("u1")
	e.user("u2")
	_, err := e.core.LinkIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s", UserID: "nobody"})
	wantIs(t, "LinkIdentity to an unknown user", err, tokenstore.ErrUserNotFound)
	_, err = e.core.LinkIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s", UserID: "u1"})
	must(t, "LinkIdentity", err)
	_, err = e.core.LinkIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s", UserID: "u2"})
	must(t, "LinkIdentity to another user", err)
	if l, _ := e.core.ListIdentities(e.ctx, "u1"); len(l) != 0 {
		t.Fatalf("u1 still lists %d identities after the relink", len(l))
	}
	if l, _ := e.core.ListIdentities(e.ctx, "u2"); len(l) != 1 || l[0].UserID != "u2" {
		t.Fatalf("u2 lists %+v", l)
	}
	u, _, err := e.core.ResolveIdentity(e.ctx, tokenstore.Identity{Provider: "oidc", Subject: "s"}, tokenstore.LinkPolicy{})
	must(t, "ResolveIdentity", err)
	if u.ID != "u2" {
		t.Fatalf("ResolveIdentity = %q, want u2", u.ID)
	}
}
