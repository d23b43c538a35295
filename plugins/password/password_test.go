package password

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// fast is a config with tiny argon2 parameters, so tests hash in
// microseconds. Tests that need other keys add them.
func fast(extra map[string]any) map[string]any {
	cfg := map[string]any{"insecure_fast": true, "argon2": map[string]any{"memory": 64, "time": 1, "threads": 1}}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

const fastPrefix = "$argon2id$v=19$m=64,t=1,p=1$"

// harness is a password verifier served over the providertest gRPC pair,
// with the *Verifier kept to read its hash counter and set its clock.
type harness struct {
	t  *testing.T
	v  *Verifier
	c  *providertest.Client
	kv *providertest.KV
}

func connect(t *testing.T, cfg any) *harness {
	t.Helper()
	v := New().(*Verifier)
	c := providertest.Open(t, func() sdk.Verifier { return v })
	if err := c.Configure(ctx(t), providertest.RawConfig(t, cfg)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return &harness{t: t, v: v, c: c, kv: c.KV()}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func payload(kv ...string) json.RawMessage {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	raw, _ := json.Marshal(m)
	return raw
}

func (h *harness) enroll(userID string, kv ...string) (sdk.EnrollResult, error) {
	return h.c.Enroll(ctx(h.t), sdk.EnrollRequest{UserID: userID, Payload: payload(kv...)})
}

func (h *harness) mustEnroll(userID, username, password string) {
	h.t.Helper()
	if _, err := h.enroll(userID, "username", username, "password", password); err != nil {
		h.t.Fatalf("Enroll(%s, %s): %v", userID, username, err)
	}
}

func (h *harness) verify(username, password string) (sdk.Identity, error) {
	return h.c.Verify(ctx(h.t), sdk.Request{Payload: payload("username", username, "password", password), RequestID: "test"})
}

func (h *harness) mustVerify(username, password, subject string) {
	h.t.Helper()
	id, err := h.verify(username, password)
	if err != nil {
		h.t.Fatalf("Verify(%s): %v", username, err)
	}
	if id.Subject != subject {
		h.t.Fatalf("Verify(%s): subject %q, want %q", username, id.Subject, subject)
	}
}

func (h *harness) record(username string) (record, bool) {
	h.t.Helper()
	raw, err := h.kv.Get(ctx(h.t), userPrefix+username)
	if errors.Is(err, sdk.ErrNotFound) {
		return record{}, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		h.t.Fatal(err)
	}
	return rec, true
}

// failures reads username's attempt counter: its failures, and any
// attempts in flight.
func (h *harness) failures(username string) int {
	h.t.Helper()
	raw, err := h.kv.Get(ctx(h.t), attemptPrefix+username)
	if errors.Is(err, sdk.ErrNotFound) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	n, ok := sdk.DecodeCounter(raw)
	if !ok {
		h.t.Fatalf("attempt counter of %s: %x is no counter", username, raw)
	}
	return int(n)
}

func wantCode(t *testing.T, what string, err, sentinel error, msg string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: %v, want %v", what, err, sentinel)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: %q does not say %q", what, err, msg)
	}
}

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Suite{
		New:    New,
		Config: fast(nil),
		Valid: func(t *testing.T, c providertest.Conn) json.RawMessage {
			_, err := c.Enroll(ctx(t), sdk.EnrollRequest{UserID: "u1", Payload: payload("username", "alice", "password", "correct horse")})
			if err != nil {
				t.Fatal(err)
			}
			return payload("username", "Alice", "password", "correct horse")
		},
	})
}

func TestDescribe(t *testing.T) {
	h := connect(t, fast(nil))
	info, err := h.c.Describe(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "password" || !info.ProvesIdentity || strings.Join(info.Flows, ",") != sdk.FlowDirect ||
		strings.Join(info.Capabilities, ",") != sdk.CapEnroller {
		t.Fatalf("Describe: %+v", info)
	}
}

func TestConfigureErrorsCrossTheBoundary(t *testing.T) {
	c := providertest.Open(t, New)
	err := c.Configure(ctx(t), json.RawMessage(`{"argon2": {"memory": 4096}, "lockout": {"attempts": 500}}`))
	wantCode(t, "Configure", err, sdk.ErrInvalidRequest, "argon2.memory")
	wantCode(t, "Configure", err, sdk.ErrInvalidRequest, "lockout.attempts")
	wantCode(t, "Configure", err, sdk.ErrInvalidRequest, "insecure_fast")
}

func TestEnrollAndVerify(t *testing.T) {
	h := connect(t, fast(nil))
	res, err := h.enroll("u1", "username", "Alice", "password", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if res.Subject != "alice" {
		t.Fatalf("Subject %q, want the lowercased username", res.Subject)
	}
	var data map[string]string
	if err := json.Unmarshal(res.Data, &data); err != nil || data["username"] != "alice" || data["algorithm"] != "argon2id" {
		t.Fatalf("Data %s", res.Data)
	}
	rec, ok := h.record("alice")
	if !ok || rec.UserID != "u1" || !strings.HasPrefix(rec.Hash, fastPrefix) || rec.Updated.IsZero() {
		t.Fatalf("record %+v", rec)
	}
	if _, err := parsePHC(rec.Hash); err != nil {
		t.Fatalf("stored hash: %v", err)
	}
	if strings.Contains(strings.Join(h.kv.Keys(), " "), "correct") {
		t.Fatal("the password is in a KV key")
	}

	h.mustVerify("alice", "correct horse", "alice")
	h.mustVerify("ALICE", "correct horse", "alice")

	_, err = h.verify("alice", "correct horsE")
	wantCode(t, "wrong password", err, sdk.ErrInvalidCredentials, "")
	_, err2 := h.verify("bob", "correct horse")
	wantCode(t, "unknown username", err2, sdk.ErrInvalidCredentials, "")
	if err.Error() != err2.Error() {
		t.Fatalf("wrong password says %q, unknown username %q: they must be the same", err, err2)
	}

	// Changing the password: the old one stops working.
	h.mustEnroll("u1", "alice", "battery staple")
	if _, err := h.verify("alice", "correct horse"); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("old password after a change: %v", err)
	}
	h.mustVerify("alice", "battery staple", "alice")
}

func TestVerifyPayload(t *testing.T) {
	h := connect(t, fast(nil))
	h.mustEnroll("u1", "alice", "correct horse")
	for _, tc := range []struct{ name, payload, msg string }{
		{"no username", `{"password": "correct horse"}`, "username is required"},
		{"no password", `{"username": "alice"}`, "password is required"},
		{"empty password", `{"username": "alice", "password": ""}`, "password is required"},
		{"not an object", `["alice"]`, "payload"},
		{"number password", `{"username": "alice", "password": 12345678}`, "payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.c.Verify(ctx(t), sdk.Request{Payload: json.RawMessage(tc.payload)})
			wantCode(t, tc.name, err, sdk.ErrInvalidRequest, tc.msg)
		})
	}
	// Other fields (a captcha guard's token) are the guard's business.
	id, err := h.c.Verify(ctx(t), sdk.Request{Payload: json.RawMessage(`{"username": "alice", "password": "correct horse", "captcha": "tok"}`)})
	if err != nil || id.Subject != "alice" {
		t.Fatalf("extra fields: %v %+v", err, id)
	}
	// A username no one can enroll is simply wrong.
	_, err = h.verify(" alice", "correct horse")
	wantCode(t, "untrimmed username", err, sdk.ErrInvalidCredentials, "")
}

// TestUnknownUsernameCostsAHash checks the fakePasswordHash path: an
// unknown username runs one hash, exactly as a wrong password does.
func TestUnknownUsernameCostsAHash(t *testing.T) {
	h := connect(t, fast(map[string]any{"lockout": map[string]any{"attempts": 0}}))
	h.mustEnroll("u1", "alice", "correct horse")
	for _, tc := range []struct{ name, username, password string }{
		{"unknown username", "mallory", "correct horse"},
		{"wrong password", "alice", "wrong horse"},
		{"right password", "alice", "correct horse"},
	} {
		before := h.v.hashes.Load()
		_, _ = h.verify(tc.username, tc.password)
		if got := h.v.hashes.Load() - before; got != 1 {
			t.Errorf("%s ran %d hashes, want 1", tc.name, got)
		}
	}
}

func TestUsernameTaken(t *testing.T) {
	h := connect(t, fast(nil))
	h.mustEnroll("u1", "alice", "correct horse")
	_, err := h.enroll("u2", "username", "ALICE", "password", "other password")
	wantCode(t, "another user's username", err, sdk.ErrInvalidRequest, "username taken")
	h.mustVerify("alice", "correct horse", "alice")
	if rec, _ := h.record("alice"); rec.UserID != "u1" {
		t.Fatalf("the record passed to %s", rec.UserID)
	}
}

func TestUsernameChange(t *testing.T) {
	h := connect(t, fast(nil))
	h.mustEnroll("u1", "alice", "correct horse")
	h.mustEnroll("u1", "alicia", "correct horse")
	if _, ok := h.record("alice"); ok {
		t.Fatal("the old username's record is still there")
	}
	if _, err := h.verify("alice", "correct horse"); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("old username: %v", err)
	}
	h.mustVerify("alicia", "correct horse", "alicia")
	// The old username is free again.
	h.mustEnroll("u2", "alice", "another password")
	h.mustVerify("alice", "another password", "alice")
	h.mustVerify("alicia", "correct horse", "alicia")
}

func TestLengthRules(t *testing.T) {
	h := connect(t, fast(map[string]any{"min_length": 8, "max_length": 32}))
	for _, tc := range []struct {
		name, password, msg string
	}{
		{"7 characters", "1234567", "min_length (8 characters)"},
		{"33 bytes", strings.Repeat("x", 33), "max_length (32 bytes)"},
		{"17 characters in 34 bytes", strings.Repeat("é", 17), "max_length (32 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.enroll("u1", "username", "alice", "password", tc.password)
			wantCode(t, tc.name, err, sdk.ErrInvalidRequest, tc.msg)
		})
	}
	// Characters, not bytes, count for the minimum: 8 é are 16 bytes.
	h.mustEnroll("u1", "alice", strings.Repeat("é", 8))
	h.mustVerify("alice", strings.Repeat("é", 8), "alice")
	h.mustEnroll("u2", "bob", strings.Repeat("x", 32))
	h.mustVerify("bob", strings.Repeat("x", 32), "bob")

	before := h.v.hashes.Load()
	_, err := h.verify("bob", strings.Repeat("x", 33))
	wantCode(t, "verify over max_length", err, sdk.ErrInvalidCredentials, "")
	if h.v.hashes.Load() != before {
		t.Fatal("a password over max_length was hashed")
	}
	if h.failures("bob") != 1 {
		t.Fatal("a password over max_length is a failure")
	}
}

func TestEnrollPayload(t *testing.T) {
	h := connect(t, fast(nil))
	for _, tc := range []struct{ name, userID, payload, msg string }{
		{"no user id", "", `{"username": "alice", "password": "correct horse"}`, "user id"},
		{"no username", "u1", `{"password": "correct horse"}`, "username: required"},
		{"control character", "u1", `{"username": "al\u0000ice", "password": "correct horse"}`, "username: control"},
		{"leading space", "u1", `{"username": " alice", "password": "correct horse"}`, "username: leading or trailing space"},
		{"long username", "u1", `{"username": "` + strings.Repeat("a", 129) + `", "password": "correct horse"}`, "username: longer than 128"},
		{"neither", "u1", `{"username": "alice"}`, "password (or hash"},
		{"both", "u1", `{"username": "alice", "password": "correct horse", "hash": "` + readmeBcrypt + `"}`, "not both"},
		{"unknown field", "u1", `{"username": "alice", "pasword": "correct horse"}`, "pasword"},
		{"bad hash", "u1", `{"username": "alice", "hash": "$1$abc$def"}`, "hash: unsupported format"},
		{"bcrypt cost over the limit", "u1", `{"username": "alice", "hash": "$2a$15$` + readmeBcrypt[7:] + `"}`, "import limit"},
		{"argon2 memory over the limit", "u1", `{"username": "alice", "hash": "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY"}`, "import limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.c.Enroll(ctx(t), sdk.EnrollRequest{UserID: tc.userID, Payload: json.RawMessage(tc.payload)})
			wantCode(t, tc.name, err, sdk.ErrInvalidRequest, tc.msg)
		})
	}
	if keys := h.kv.Keys(); len(keys) != 0 {
		t.Fatalf("refused enrollments left %q", keys)
	}
}

func TestBcryptImportRehashedOnLogin(t *testing.T) {
	h := connect(t, fast(nil))
	// Cost 4: bcrypt is slow under -race. TestParseHash checks the
	// README's cost-10 hash.
	raw, err := bcrypt.GenerateFromPassword([]byte(readmeBcryptPW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	imported := "$2b$" + string(raw[4:])
	res, err := h.enroll("u1", "username", "Bob", "hash", imported)
	if err != nil {
		t.Fatal(err)
	}
	if res.Subject != "bob" || !strings.Contains(string(res.Data), `"bcrypt"`) {
		t.Fatalf("Enroll: %+v %s", res, res.Data)
	}
	if rec, _ := h.record("bob"); rec.Hash != imported {
		t.Fatalf("stored %q, want the imported hash", rec.Hash)
	}
	if _, err := h.verify("bob", "not bob's password"); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if rec, _ := h.record("bob"); rec.Hash != imported {
		t.Fatal("a failed sign-in re-hashed")
	}
	h.mustVerify("bob", readmeBcryptPW, "bob")
	rec, _ := h.record("bob")
	if !strings.HasPrefix(rec.Hash, fastPrefix) || rec.UserID != "u1" {
		t.Fatalf("after sign-in the record is %+v, want argon2id with the current parameters", rec)
	}
	// The new hash works, and is current: no re-hash this time.
	before := h.v.hashes.Load()
	h.mustVerify("bob", readmeBcryptPW, "bob")
	if got := h.v.hashes.Load() - before; got != 1 {
		t.Fatalf("a sign-in with a current hash ran %d hashes", got)
	}
	if again, _ := h.record("bob"); again.Hash != rec.Hash {
		t.Fatal("a current hash was re-hashed")
	}
}

func TestArgon2ImportRehashedOnLogin(t *testing.T) {
	salt := []byte("0123456789abcdef")
	mk := func(alg string, m, tm uint32) string {
		h := phcHash{Alg: alg, argon2Params: argon2Params{Memory: m, Time: tm, Threads: 1}, Salt: salt}
		if alg == algArgon2i {
			h.Key = argon2.Key([]byte("imported pw"), salt, tm, m, 1, 32)
		} else {
			h.Key = argon2.IDKey([]byte("imported pw"), salt, tm, m, 1, 32)
		}
		return h.String()
	}
	for _, tc := range []struct{ name, hash, alg string }{
		{"argon2i", mk(algArgon2i, 64, 1), "argon2i"},
		{"argon2id other parameters", mk(algArgon2id, 128, 2), "argon2id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := connect(t, fast(nil))
			pw := "imported pw"
			res, err := h.enroll("u1", "username", "carol", "hash", tc.hash)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(res.Data), `"`+tc.alg+`"`) {
				t.Fatalf("Data %s", res.Data)
			}
			if _, err := h.verify("carol", pw+"!"); !errors.Is(err, sdk.ErrInvalidCredentials) {
				t.Fatalf("wrong password: %v", err)
			}
			h.mustVerify("carol", pw, "carol")
			if rec, _ := h.record("carol"); !strings.HasPrefix(rec.Hash, fastPrefix) {
				t.Fatalf("not re-hashed: %s", rec.Hash)
			}
			h.mustVerify("carol", pw, "carol")
		})
	}
	// A hash made by this plugin at the same parameters is current.
	h := connect(t, fast(nil))
	same, err := newArgon2id([]byte("imported pw"), tiny)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.enroll("u1", "username", "dave", "hash", same.String()); err != nil {
		t.Fatal(err)
	}
	h.mustVerify("dave", "imported pw", "dave")
	if rec, _ := h.record("dave"); rec.Hash != same.String() {
		t.Fatal("a current hash was re-hashed")
	}
}

// clock is a settable time source for the lockout tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLockout(t *testing.T) {
	h := connect(t, fast(map[string]any{"lockout": map[string]any{"attempts": 3, "duration": "10m"}}))
	now := &clock{t: time.Now()}
	h.v.now = now.Now
	h.mustEnroll("u1", "alice", "correct horse")

	for i := range 3 {
		_, err := h.verify("alice", "wrong horse")
		wantCode(t, "wrong password", err, sdk.ErrInvalidCredentials, "")
		if strings.Contains(err.Error(), "locked") {
			t.Fatalf("failure %d already says locked", i+1)
		}
	}
	before := h.v.hashes.Load()
	_, err := h.verify("alice", "correct horse")
	wantCode(t, "the right password while locked", err, sdk.ErrInvalidCredentials, "locked; try again in 10m0s")
	if h.v.hashes.Load() != before {
		t.Fatal("a locked username was hashed")
	}

	// Unknown usernames lock the same way, with the same words.
	for range 3 {
		_, _ = h.verify("nobody", "whatever1")
	}
	_, err2 := h.verify("nobody", "whatever1")
	wantCode(t, "unknown username", err2, sdk.ErrInvalidCredentials, "locked")
	if err.Error() != err2.Error() {
		t.Fatalf("locked: %q vs %q", err, err2)
	}

	// The lock ends after the duration, even if the host has not swept it.
	now.Add(10*time.Minute + time.Second)
	h.mustVerify("alice", "correct horse", "alice")
	if h.failures("alice") != 0 {
		t.Fatal("a successful sign-in left the failures")
	}

	// A success resets the count.
	for range 2 {
		_, _ = h.verify("alice", "wrong horse")
	}
	h.mustVerify("alice", "correct horse", "alice")
	for range 2 {
		_, _ = h.verify("alice", "wrong horse")
	}
	h.mustVerify("alice", "correct horse", "alice")

	// Enrolling (an admin setting a new password) clears a lock.
	for range 3 {
		_, _ = h.verify("alice", "wrong horse")
	}
	h.mustEnroll("u1", "alice", "battery staple")
	h.mustVerify("alice", "battery staple", "alice")
}

// TestLockoutExpires uses real time: the host KV's TTL and the plugin's
// own clock both end the lock.
func TestLockoutExpires(t *testing.T) {
	h := connect(t, fast(map[string]any{"lockout": map[string]any{"attempts": 1, "duration": "300ms"}}))
	h.mustEnroll("u1", "alice", "correct horse")
	if _, err := h.verify("alice", "wrong horse"); !errors.Is(err, sdk.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	_, err := h.verify("alice", "correct horse")
	wantCode(t, "locked", err, sdk.ErrInvalidCredentials, "locked")
	time.Sleep(400 * time.Millisecond)
	h.mustVerify("alice", "correct horse", "alice")

	// Failures lapse a duration after the last one (the host KV's TTL).
	h = connect(t, fast(map[string]any{"lockout": map[string]any{"attempts": 3, "duration": "300ms"}}))
	h.mustEnroll("u1", "alice", "correct horse")
	for range 2 {
		_, _ = h.verify("alice", "wrong horse")
	}
	time.Sleep(400 * time.Millisecond)
	_, _ = h.verify("alice", "wrong horse")
	if n := h.failures("alice"); n != 1 {
		t.Fatalf("after a lapse the count is %d, want 1", n)
	}
	h.mustVerify("alice", "correct horse", "alice")
}

func TestLockoutOff(t *testing.T) {
	h := connect(t, fast(map[string]any{"lockout": map[string]any{"attempts": 0}}))
	h.mustEnroll("u1", "alice", "correct horse")
	for range 10 {
		_, _ = h.verify("alice", "wrong horse")
	}
	h.mustVerify("alice", "correct horse", "alice")
	for _, k := range h.kv.Keys() {
		if strings.HasPrefix(k, attemptPrefix) || strings.HasPrefix(k, lockPrefix) {
			t.Fatalf("lockout off, yet %s", k)
		}
	}
}

// TestConcurrentFailuresCounted fires failures at once through the gRPC
// pair: CompareAndSwap must count every one, and lock at exactly the
// threshold.
func TestConcurrentFailuresCounted(t *testing.T) {
	burst := func(h *harness, username string, n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := h.verify(username, "wrong horse"); !errors.Is(err, sdk.ErrInvalidCredentials) {
					t.Errorf("concurrent failure: %v", err)
				}
			})
		}
		wg.Wait()
	}
	t.Run("counted", func(t *testing.T) {
		h := connect(t, fast(map[string]any{"max_concurrent": 8, "lockout": map[string]any{"attempts": 100, "duration": "1h"}}))
		h.mustEnroll("u1", "alice", "correct horse")
		burst(h, "alice", 40)
		burst(h, "ghost", 40)
		if n := h.failures("alice"); n != 40 {
			t.Fatalf("alice: %d failures counted, want 40", n)
		}
		if n := h.failures("ghost"); n != 40 {
			t.Fatalf("ghost: %d failures counted, want 40", n)
		}
	})
	t.Run("locks at the threshold", func(t *testing.T) {
		h := connect(t, fast(map[string]any{"max_concurrent": 8, "lockout": map[string]any{"attempts": 12, "duration": "1h"}}))
		h.mustEnroll("u1", "alice", "correct horse")
		burst(h, "alice", 11)
		h.mustVerify("alice", "correct horse", "alice") // 11 < 12: not locked, and reset
		burst(h, "alice", 12)
		_, err := h.verify("alice", "correct horse")
		wantCode(t, "after 12 concurrent failures", err, sdk.ErrInvalidCredentials, "locked")
		burst(h, "alice", 20)
		if n := h.failures("alice"); n != 12 {
			t.Fatalf("%d failures counted, want the lock's 12", n)
		}
	})
}

// TestHashingBounded holds the only hashing slot: a sign-in waits for it
// as long as its deadline allows, then answers unavailable.
func TestHashingBounded(t *testing.T) {
	h := connect(t, fast(map[string]any{"max_concurrent": 1}))
	h.mustEnroll("u1", "alice", "correct horse")
	h.v.sem <- struct{}{} // every slot taken

	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.c.Verify(c, sdk.Request{Payload: payload("username", "alice", "password", "correct horse")})
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("busy: %v, want unavailable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("waited %s past the deadline", took)
	}
	// The plugin gives the attempt back once it sees the deadline, which
	// may be just after the host gave up.
	for deadline := time.Now().Add(2 * time.Second); h.failures("alice") != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an unavailable answer counted as a failure")
		}
	}

	done := make(chan error, 1)
	go func() { _, err := h.verify("alice", "correct horse"); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("verified without a slot: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-h.v.sem
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDefaultParameters runs the real defaults (OWASP's minimum) once, and
// logs how an unknown username's time compares with a wrong password's.
func TestDefaultParameters(t *testing.T) {
	h := connect(t, nil)
	h.mustEnroll("u1", "alice", "correct horse")
	rec, _ := h.record("alice")
	p, err := parsePHC(rec.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.Hash, "$argon2id$v=19$m=19456,t=2,p=1$") || len(p.Salt) != 16 || len(p.Key) != 32 {
		t.Fatalf("default hash %s", rec.Hash)
	}
	h.mustVerify("alice", "correct horse", "alice")

	timeOf := func(username string) time.Duration {
		start := time.Now()
		if _, err := h.verify(username, "wrong horse"); !errors.Is(err, sdk.ErrInvalidCredentials) {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	var wrong, unknown []time.Duration
	for range 3 { // 6 failures in all: mallory and alice stay under the lockout's 5 each
		wrong = append(wrong, timeOf("alice"))
		unknown = append(unknown, timeOf("mallory"))
	}
	slices.Sort(wrong)
	slices.Sort(unknown)
	t.Logf("at the defaults, median of 3: wrong password %s, unknown username %s (ratio %.2f)",
		wrong[1], unknown[1], float64(unknown[1])/float64(wrong[1]))
}

func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  map[string]any
	}{
		{"default", nil},
		{"insecure_fast", fast(nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, _ := providertest.Connect(b, New, bc.cfg)
			ctx := context.Background()
			if _, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: payload("username", "alice", "password", "correct horse")}); err != nil {
				b.Fatal(err)
			}
			req := sdk.Request{Payload: payload("username", "alice", "password", "correct horse")}
			for b.Loop() {
				if _, err := c.Verify(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		// What the machine can verify: as many at once as it has cores
		// (the plugin's max_concurrent defaults to GOMAXPROCS).
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			c, _ := providertest.Connect(b, New, bc.cfg)
			ctx := context.Background()
			if _, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: payload("username", "alice", "password", "correct horse")}); err != nil {
				b.Fatal(err)
			}
			req := sdk.Request{Payload: payload("username", "alice", "password", "correct horse")}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Verify(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}

// TestParallelGuessesThenRightPassword is the attack of issue 9 §2: 40
// wrong guesses at once, then the right password while they are in flight,
// with lockout.attempts 5. Hashing is held until all are sent, so every
// guess reads the lock before any compare ends; the lock held only if the
// attempts are reserved before comparing. No sign-in may succeed, and at
// most 5 hashes may run.
func TestParallelGuessesThenRightPassword(t *testing.T) {
	const guesses, attempts = 40, 5
	h := connect(t, fast(map[string]any{"max_concurrent": 4, "lockout": map[string]any{"attempts": attempts, "duration": "1h"}}))
	h.mustEnroll("u1", "alice", "correct horse")
	before := h.v.hashes.Load()
	for range cap(h.v.sem) {
		h.v.sem <- struct{}{} // every hashing slot taken: compares wait
	}
	var (
		wg      sync.WaitGroup
		started atomic.Int32
		wins    atomic.Int32
	)
	for range guesses {
		wg.Go(func() {
			started.Add(1)
			if _, err := h.verify("alice", "wrong horse"); err == nil {
				wins.Add(1)
			}
		})
	}
	for started.Load() < guesses {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // all in flight: refused, or waiting for a slot
	right := make(chan error, 1)
	go func() {
		id, err := h.verify("alice", "correct horse")
		if err == nil {
			t.Errorf("the right password, sent last, signed in as %q", id.Subject)
		}
		right <- err
	}()
	time.Sleep(50 * time.Millisecond)
	for range cap(h.v.sem) {
		<-h.v.sem
	}
	wg.Wait()
	err := <-right
	wantCode(t, "the right password during the burst", err, sdk.ErrInvalidCredentials, "locked")
	if wins.Load() != 0 {
		t.Fatalf("%d wrong guesses signed in", wins.Load())
	}
	if n := h.v.hashes.Load() - before; n > attempts {
		t.Fatalf("%d hashes compared, want at most lockout.attempts (%d)", n, attempts)
	}
	_, err = h.verify("alice", "correct horse")
	wantCode(t, "the right password after the burst", err, sdk.ErrInvalidCredentials, "locked")
}
