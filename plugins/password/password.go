package password

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ sdk.Verifier = (*Verifier)(nil)
	_ sdk.Enroller = (*Verifier)(nil)
)

// Version is the plugin's version, reported in Describe.
const Version = "1.1.0"

// Keys in the host KV. Usernames are lowercased before they are used.
const (
	userPrefix  = "user/" // user/<username>: record
	ownerPrefix = "uid/"  // uid/<user id>: the user's username
	// attempts/<username>: the attempt counter (sdk.KV.Add), reserved
	// before each compare. Version 1.0 kept a JSON count under fail/; it
	// lapses by its TTL.
	attemptPrefix = "attempts/"
	lockPrefix    = "lock/" // lock/<username>: a lock, as JSON
)

const (
	maxUsernameLen = 128 // bytes, after lowercasing
	maxUserIDLen   = 256
	// casRetries bounds a CompareAndSwap loop. Each retry means another
	// writer won a round, so this many is contention no real login sees.
	casRetries = 64
	// undoTimeout bounds giving an attempt back, or writing a lock, after
	// the sign-in's own deadline has passed.
	undoTimeout = 2 * time.Second
)

// record is what the plugin keeps per username, under user/<username>.
type record struct {
	UserID  string    `json:"user_id"`
	Hash    string    `json:"hash"`
	Updated time.Time `json:"updated"`
}

// lock is a username's lock, under lock/<username>, written by the
// failure that reached lockout.attempts. The host's TTL removes it at
// Until; Until is also checked here, by the plugin's clock.
type lock struct {
	Until time.Time `json:"until"`
}

// login is a verify payload. Other fields (a guard's token) are ignored.
type login struct {
	Username string  `json:"username"`
	Password *string `json:"password"`
}

// enrollment is an enroll payload: a password, or a hash to import.
type enrollment struct {
	Username string  `json:"username"`
	Password *string `json:"password"`
	Hash     *string `json:"hash"`
}

// Verifier is the password verifier: usernames and argon2id hashes in the
// host's KV, with per-username lockout. It is safe for concurrent use once
// configured.
type Verifier struct {
	cfg    Config
	params argon2Params
	kv     sdk.KV
	sem    chan struct{} // one token per hash in progress
	dummy  phcHash       // compared against for unknown usernames
	now    func() time.Time

	// hashes counts password hash evaluations (argon2 or bcrypt), so tests
	// can see that an unknown username costs a hash like a wrong password.
	hashes atomic.Int64
}

// New makes an unconfigured password verifier (an sdk.Factory).
func New() sdk.Verifier { return &Verifier{now: time.Now} }

// Describe reports the plugin: direct flow, proves identity, enrolls.
func (v *Verifier) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "password", Version: Version, Flows: []string{sdk.FlowDirect}, ProvesIdentity: true}, nil
}

// Configure reads the config and computes the dummy hash that unknown
// usernames are checked against, with the configured parameters, so that
// they cost what a wrong password costs (Vault's fakePasswordHash).
func (v *Verifier) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	if host == nil {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "password: the host offers no KV, and the plugin keeps its hashes there"}
	}
	v.cfg, v.params, v.kv = cfg, cfg.params(), host.KV()
	v.sem = make(chan struct{}, cfg.concurrency())
	fake := make([]byte, 32)
	if _, err := rand.Read(fake); err != nil {
		return fmt.Errorf("password: %v: %w", err, sdk.ErrInternal)
	}
	if v.dummy, err = newArgon2id(fake, v.params); err != nil {
		return fmt.Errorf("password: %v: %w", err, sdk.ErrInternal)
	}
	if cfg.InsecureFast {
		sdk.Logger(ctx).Warn("password: insecure_fast is on; hashes are cheap to crack. Use it for tests and benchmarks only",
			"argon2_memory_kib", cfg.Argon2.Memory, "argon2_passes", cfg.Argon2.Time)
	}
	return nil
}

// Verify checks {username, password} and returns Identity{Subject:
// lowercased username}. A wrong password, an unknown username, a password
// over max_length and a locked username all answer ErrInvalidCredentials;
// an unknown username costs one hash like a wrong password does.
func (v *Verifier) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	var c login
	if err := json.Unmarshal(req.Payload, &c); err != nil {
		return sdk.Identity{}, invalidRequest(`the payload must be {"username": "...", "password": "..."}`)
	}
	if c.Username == "" {
		return sdk.Identity{}, invalidRequest("username is required")
	}
	if c.Password == nil || *c.Password == "" {
		return sdk.Identity{}, invalidRequest("password is required")
	}
	username, err := normalizeUsername(c.Username)
	if err != nil {
		// No such username can be enrolled, so answering at once tells
		// nothing about who exists.
		return sdk.Identity{}, sdk.ErrInvalidCredentials
	}
	password := []byte(*c.Password)

	n, err := v.reserve(ctx, username)
	if err != nil {
		return sdk.Identity{}, err
	}
	known, err := v.check(ctx, username, password)
	switch {
	case err == nil:
		v.succeeded(ctx, username, n)
		return sdk.Identity{Subject: username}, nil
	case errors.Is(err, sdk.ErrInvalidCredentials):
		v.failed(ctx, username, n, known)
	default:
		v.unreserve(ctx, username, n) // no compare was made: give it back
	}
	return sdk.Identity{}, err
}

// check compares password with username's stored hash (or the dummy hash,
// for an unknown username), and re-hashes an outdated hash on success. It
// answers ErrInvalidCredentials for a wrong password, an unknown username
// and a password over max_length; known reports whether username is
// enrolled.
func (v *Verifier) check(ctx context.Context, username string, password []byte) (known bool, err error) {
	if len(password) > v.cfg.MaxLength {
		return false, sdk.ErrInvalidCredentials
	}
	raw, err := v.kv.Get(ctx, userPrefix+username)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return false, kvError("read user", err)
	}
	var (
		rec    record
		stored hash = v.dummy
	)
	if raw != nil {
		if err := json.Unmarshal(raw, &rec); err != nil {
			return false, fmt.Errorf("password: user record of %q unreadable: %v: %w", username, err, sdk.ErrInternal)
		}
		if stored, err = parseHash(rec.Hash); err != nil {
			return false, fmt.Errorf("password: stored hash of %q unreadable: %v: %w", username, err, sdk.ErrInternal)
		}
	}
	ok, err := v.compare(ctx, stored, password)
	if err != nil {
		return raw != nil, err
	}
	if !ok || raw == nil {
		return raw != nil, sdk.ErrInvalidCredentials
	}
	if !current(stored, v.params) {
		v.rehash(ctx, username, raw, rec, stored.algorithm(), password)
	}
	return true, nil
}

// Enroll sets or changes the password of req.UserID under a username:
// {username, password} hashes the password; {username, hash} imports an
// existing bcrypt or argon2 hash, re-hashed at the next sign-in. A username
// held by another user is refused. A user has one username: enrolling a new
// one drops the old one. Enrolling clears the username's failure count.
func (v *Verifier) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	var c enrollment
	dec := json.NewDecoder(bytes.NewReader(req.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return sdk.EnrollResult{}, invalidRequest(`the payload must be {"username": "...", "password": "..."} or {"username": "...", "hash": "..."}: %s`,
			strings.TrimPrefix(err.Error(), "json: "))
	}
	if req.UserID == "" || len(req.UserID) > maxUserIDLen {
		return sdk.EnrollResult{}, invalidRequest("a user id of 1..%d bytes is required", maxUserIDLen)
	}
	username, err := normalizeUsername(c.Username)
	if err != nil {
		return sdk.EnrollResult{}, invalidRequest("username: %s", err)
	}
	var h hash
	switch {
	case c.Password != nil && c.Hash != nil:
		return sdk.EnrollResult{}, invalidRequest("give password or hash, not both")
	case c.Password != nil:
		pw := *c.Password
		if n := utf8.RuneCountInString(pw); n < v.cfg.MinLength {
			return sdk.EnrollResult{}, invalidRequest("password: shorter than min_length (%d characters)", v.cfg.MinLength)
		}
		if len(pw) > v.cfg.MaxLength {
			return sdk.EnrollResult{}, invalidRequest("password: longer than max_length (%d bytes)", v.cfg.MaxLength)
		}
		if h, err = v.hash(ctx, []byte(pw)); err != nil {
			return sdk.EnrollResult{}, err
		}
	case c.Hash != nil:
		if h, err = parseHash(*c.Hash); err != nil {
			return sdk.EnrollResult{}, invalidRequest("hash: %s", err)
		}
		if err := checkImport(h, v.params); err != nil {
			return sdk.EnrollResult{}, invalidRequest("hash: %s", err)
		}
	default:
		return sdk.EnrollResult{}, invalidRequest("password (or hash, to import one) is required")
	}

	newRaw, err := json.Marshal(record{UserID: req.UserID, Hash: h.String(), Updated: v.now().UTC()})
	if err != nil {
		return sdk.EnrollResult{}, fmt.Errorf("password: %v: %w", err, sdk.ErrInternal)
	}
	if err := v.claim(ctx, username, req.UserID, newRaw); err != nil {
		return sdk.EnrollResult{}, err
	}
	if err := v.moveOwner(ctx, req.UserID, username); err != nil {
		return sdk.EnrollResult{}, err
	}
	if v.cfg.Lockout.Attempts > 0 {
		for _, k := range []string{attemptPrefix + username, lockPrefix + username} {
			if err := v.kv.Delete(ctx, k); err != nil {
				return sdk.EnrollResult{}, kvError("reset failures", err)
			}
		}
	}
	data, _ := json.Marshal(map[string]string{"username": username, "algorithm": h.algorithm()})
	return sdk.EnrollResult{Subject: username, Data: data}, nil
}

// claim writes the record under user/<username>, unless another user holds
// the username.
func (v *Verifier) claim(ctx context.Context, username, userID string, newRaw []byte) error {
	key := userPrefix + username
	for range casRetries {
		cur, err := v.kv.Get(ctx, key)
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return kvError("read user", err)
		}
		if cur != nil {
			var rec record
			if err := json.Unmarshal(cur, &rec); err == nil && rec.UserID != userID {
				return invalidRequest("username taken")
			}
		}
		ok, err := v.kv.CompareAndSwap(ctx, key, cur, newRaw, 0)
		if err != nil {
			return kvError("write user", err)
		}
		if ok {
			return nil
		}
	}
	return contended()
}

// moveOwner records that userID's username is username, and drops the
// record of the username it held before, if any.
func (v *Verifier) moveOwner(ctx context.Context, userID, username string) error {
	key := ownerPrefix + userID
	old, err := v.kv.Get(ctx, key)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return kvError("read owner", err)
	}
	if string(old) == username {
		return nil
	}
	if err := v.kv.Put(ctx, key, []byte(username), 0); err != nil {
		return kvError("write owner", err)
	}
	if len(old) == 0 {
		return nil
	}
	oldKey := userPrefix + string(old)
	cur, err := v.kv.Get(ctx, oldKey)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return kvError("read old user", err)
	}
	var rec record
	if json.Unmarshal(cur, &rec) == nil && rec.UserID == userID {
		// Only if unchanged: the old username may have passed to someone.
		if _, err := v.kv.CompareAndSwap(ctx, oldKey, cur, nil, 0); err != nil {
			return kvError("drop old username", err)
		}
	}
	return nil
}

// reserve takes one of username's lockout.attempts before any hash is
// compared, and returns the attempt's number (0 when lockout is off). The
// counter is the host KV's atomic Add, so of any number of concurrent
// sign-ins at most lockout.attempts get past here within the window: the
// rest answer the locked error without hashing, whatever the compares
// then find. The counter lapses lockout.duration after the last attempt.
func (v *Verifier) reserve(ctx context.Context, username string) (int64, error) {
	if v.cfg.Lockout.Attempts == 0 {
		return 0, nil
	}
	if err := v.checkLock(ctx, username); err != nil {
		return 0, err
	}
	window := v.cfg.Lockout.Duration.Duration
	n, err := v.kv.Add(ctx, attemptPrefix+username, 1, window)
	if err != nil {
		return 0, kvError("count attempt", err)
	}
	if n > int64(v.cfg.Lockout.Attempts) {
		// Concurrent attempts hold the rest; the lock is written once
		// they have failed.
		return 0, locked(window)
	}
	return n, nil
}

// checkLock answers the locked error while username's lock lasts. A lock
// past its Until by this plugin's clock, not yet expired by the host's,
// is ended here, with its count, by the one caller whose CompareAndSwap
// removes it.
func (v *Verifier) checkLock(ctx context.Context, username string) error {
	key := lockPrefix + username
	raw, err := v.kv.Get(ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return kvError("read lock", err)
	}
	var l lock
	if json.Unmarshal(raw, &l) == nil && v.now().Before(l.Until) {
		return locked(l.Until.Sub(v.now()))
	}
	ended, err := v.kv.CompareAndSwap(ctx, key, raw, nil, 0)
	if err != nil {
		return kvError("end lock", err)
	}
	if ended {
		if err := v.kv.Delete(ctx, attemptPrefix+username); err != nil {
			return kvError("reset failures", err)
		}
	}
	return nil
}

// failed keeps attempt n of username as a failure. The failure that is
// the lockout.attempts-th writes the lock, which lasts lockout.duration.
// The lock is logged with the username only when it is known to be
// enrolled: another may be a password typed into the wrong field.
func (v *Verifier) failed(ctx context.Context, username string, n int64, known bool) {
	if n == 0 || n < int64(v.cfg.Lockout.Attempts) {
		return
	}
	window := v.cfg.Lockout.Duration.Duration
	raw, _ := json.Marshal(lock{Until: v.now().Add(window).UTC()})
	// The compare may have used up the sign-in's deadline.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := v.kv.Put(wctx, lockPrefix+username, raw, window); err != nil {
		// The counter still refuses every attempt until it lapses.
		sdk.Logger(ctx).Warn("password: could not write the lock", "err", err.Error())
		return
	}
	shown := username
	if !known {
		shown = "(withheld)"
	}
	sdk.Logger(ctx).Info("password: username locked after repeated failures",
		"username", shown, "attempts", n, "for", window.String())
}

// succeeded resets username's count after a sign-in proved the password,
// as well as a lock a concurrent failure wrote meanwhile. It only logs
// when it fails: the sign-in stands.
func (v *Verifier) succeeded(ctx context.Context, username string, n int64) {
	if n == 0 {
		return
	}
	keys := []string{attemptPrefix + username}
	if n > 1 {
		keys = append(keys, lockPrefix+username)
	}
	for _, k := range keys {
		if err := v.kv.Delete(ctx, k); err != nil {
			sdk.Logger(ctx).Warn("password: could not reset the failure count", "username", username, "err", err.Error())
		}
	}
}

// unreserve gives attempt n back when no compare was made (no hashing
// slot in time, a KV error): only a compare counts against the limit.
func (v *Verifier) unreserve(ctx context.Context, username string, n int64) {
	if n == 0 {
		return
	}
	// Often the sign-in's deadline is what failed; the undo gets its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if _, err := v.kv.Add(ctx, attemptPrefix+username, -1, v.cfg.Lockout.Duration.Duration); err != nil {
		sdk.Logger(ctx).Warn("password: could not give an attempt back", "err", err.Error())
	}
}

// rehash replaces a stored hash that is not argon2id with the current
// parameters, after a successful sign-in proved the password. It only
// logs when it fails: the sign-in stands, and the next one tries again.
func (v *Verifier) rehash(ctx context.Context, username string, oldRaw []byte, rec record, from string, password []byte) {
	log := sdk.Logger(ctx)
	h, err := v.hash(ctx, password)
	if err != nil {
		log.Warn("password: re-hash skipped", "username", username, "err", err.Error())
		return
	}
	rec.Hash, rec.Updated = h.String(), v.now().UTC()
	newRaw, _ := json.Marshal(rec)
	ok, err := v.kv.CompareAndSwap(ctx, userPrefix+username, oldRaw, newRaw, 0)
	switch {
	case err != nil:
		log.Warn("password: re-hash not stored", "username", username, "err", err.Error())
	case !ok:
		log.Info("password: re-hash dropped: the record changed meanwhile", "username", username)
	default:
		log.Info("password: re-hashed with the current parameters", "username", username, "from", from)
	}
}

// acquire takes a hashing slot, waiting no longer than ctx allows.
func (v *Verifier) acquire(ctx context.Context) error {
	select {
	case v.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "password: too many sign-ins at once; try again"}
	}
}

func (v *Verifier) release() { <-v.sem }

// compare checks password against h in a hashing slot.
func (v *Verifier) compare(ctx context.Context, h hash, password []byte) (bool, error) {
	if err := v.acquire(ctx); err != nil {
		return false, err
	}
	defer v.release()
	v.hashes.Add(1)
	return h.matches(password), nil
}

// hash makes a new argon2id hash of password in a hashing slot.
func (v *Verifier) hash(ctx context.Context, password []byte) (hash, error) {
	if err := v.acquire(ctx); err != nil {
		return nil, err
	}
	defer v.release()
	v.hashes.Add(1)
	h, err := newArgon2id(password, v.params)
	if err != nil {
		return nil, fmt.Errorf("password: %v: %w", err, sdk.ErrInternal)
	}
	return h, nil
}

// normalizeUsername lowercases a username and checks it: 1..128 bytes, no
// control characters, no leading or trailing space.
func normalizeUsername(s string) (string, error) {
	u := strings.ToLower(s)
	switch {
	case u == "":
		return "", errors.New("required")
	case len(u) > maxUsernameLen:
		return "", fmt.Errorf("longer than %d bytes", maxUsernameLen)
	case !utf8.ValidString(u):
		return "", errors.New("not valid UTF-8")
	case strings.TrimSpace(u) != u:
		return "", errors.New("leading or trailing space")
	case strings.ContainsFunc(u, unicode.IsControl):
		return "", errors.New("control characters")
	}
	return u, nil
}

func invalidRequest(format string, args ...any) error {
	return &sdk.Error{Code: sdk.CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

func locked(left time.Duration) error {
	left = max(left.Round(time.Second), time.Second)
	return &sdk.Error{Code: sdk.CodeInvalidCredentials,
		Message: fmt.Sprintf("Too many failed sign-in attempts: this username is locked; try again in %s.", left)}
}

func contended() error {
	return &sdk.Error{Code: sdk.CodeUnavailable, Message: "password: too many concurrent updates of one username; try again"}
}

// kvError keeps the KV's code (unavailable, say) and says what failed.
func kvError(what string, err error) error {
	return &sdk.Error{Code: sdk.CodeOf(err), Message: "password: " + what + ": " + err.Error()}
}
