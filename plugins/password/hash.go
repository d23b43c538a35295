package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The algorithms of stored hashes. New hashes are always argon2id; the
// others are accepted on import and re-hashed at the next sign-in.
const (
	algArgon2id = "argon2id"
	algArgon2i  = "argon2i"
	algBcrypt   = "bcrypt"
)

// argon2Version is the only Argon2 version x/crypto implements (1.3, 0x13).
const argon2Version = 19

// Bounds of a parsed PHC string. Salts under 8 bytes are below libargon2's
// minimum; keys under 16 bytes are short enough to collide by chance.
const (
	minSaltLen = 8
	maxSaltLen = 256
	minKeyLen  = 16
	maxKeyLen  = 256
	maxHashLen = 1024 // characters of a stored or imported hash string
)

// Bounds of an imported hash's cost, so one import cannot make every
// sign-in of that user take seconds or gigabytes. The configured
// parameters, when higher, raise them.
const (
	importMaxMemory     = 256 * 1024 // KiB
	importMaxTime       = 16
	importMaxBcryptCost = 14 // about 1.1 s per check
)

// argon2Params are argon2's cost parameters.
type argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// hash is a stored password hash.
type hash interface {
	// matches reports whether password is the hashed one, comparing in
	// constant time.
	matches(password []byte) bool
	// algorithm names the hash: argon2id, argon2i or bcrypt.
	algorithm() string
	// String returns the stored form.
	String() string
}

// phcHash is an argon2id or argon2i hash in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in standard base64 without padding.
type phcHash struct {
	Alg string // algArgon2id or algArgon2i
	argon2Params
	Salt []byte
	Key  []byte
}

// bcryptHash is a bcrypt hash ($2a$, $2b$ or $2y$), verified with
// x/crypto/bcrypt.
type bcryptHash struct {
	raw  string
	cost int
}

var errHashFormat = errors.New("unsupported format: want a PHC argon2id or argon2i string ($argon2id$v=19$m=...,t=...,p=...$salt$hash) or bcrypt ($2a$, $2b$, $2y$)")

// parseHash reads a stored or imported hash.
func parseHash(s string) (hash, error) {
	if len(s) > maxHashLen {
		return nil, fmt.Errorf("longer than %d characters", maxHashLen)
	}
	switch {
	case strings.HasPrefix(s, "$argon2id$"), strings.HasPrefix(s, "$argon2i$"):
		h, err := parsePHC(s)
		if err != nil {
			return nil, err
		}
		return h, nil
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return parseBcrypt(s)
	}
	return nil, errHashFormat
}

// parsePHC reads an argon2 PHC string. It is strict, so that what it reads
// formats back to the same string: version 19 only, parameters in the order
// m, t, p as decimals without leading zeros, salt and key in standard
// base64 without padding.
func parsePHC(s string) (phcHash, error) {
	var h phcHash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return h, errors.New("argon2: want $alg$v=19$m=M,t=T,p=P$salt$hash")
	}
	switch parts[1] {
	case algArgon2id, algArgon2i:
		h.Alg = parts[1]
	default:
		return h, fmt.Errorf("argon2: unsupported algorithm %q", parts[1])
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return h, errors.New("argon2: want v=19 after the algorithm")
	}
	if n, err := decimal(v, 32); err != nil || n != argon2Version {
		return h, fmt.Errorf("argon2: unsupported version %q (want 19)", v)
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, errors.New("argon2: want parameters m=M,t=T,p=P")
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		val, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return h, fmt.Errorf("argon2: want parameter %s in position %d", name, i+1)
		}
		bits := 32
		if name == "p" {
			bits = 8
		}
		n, err := decimal(val, bits)
		if err != nil {
			return h, fmt.Errorf("argon2: parameter %s: %w", name, err)
		}
		vals[i] = n
	}
	h.Memory, h.Time, h.Threads = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	switch {
	case h.Threads < 1:
		return h, errors.New("argon2: p must be at least 1")
	case h.Time < 1:
		return h, errors.New("argon2: t must be at least 1")
	case h.Memory < 8*uint32(h.Threads):
		return h, errors.New("argon2: m must be at least 8*p")
	}
	var err error
	if h.Salt, err = b64(parts[4]); err != nil {
		return h, fmt.Errorf("argon2: salt: %w", err)
	}
	if h.Key, err = b64(parts[5]); err != nil {
		return h, fmt.Errorf("argon2: hash: %w", err)
	}
	if len(h.Salt) < minSaltLen || len(h.Salt) > maxSaltLen {
		return h, fmt.Errorf("argon2: salt must be %d..%d bytes, got %d", minSaltLen, maxSaltLen, len(h.Salt))
	}
	if len(h.Key) < minKeyLen || len(h.Key) > maxKeyLen {
		return h, fmt.Errorf("argon2: hash must be %d..%d bytes, got %d", minKeyLen, maxKeyLen, len(h.Key))
	}
	return h, nil
}

// decimal reads an unsigned decimal without sign or leading zeros.
func decimal(s string, bits int) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.ContainsAny(s, "+-_") {
		return 0, fmt.Errorf("%q is not a canonical decimal", s)
	}
	return strconv.ParseUint(s, 10, bits)
}

func b64(s string) ([]byte, error) {
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// String formats h as a PHC string.
func (h phcHash) String() string {
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", h.Alg, argon2Version, h.Memory, h.Time, h.Threads,
		base64.RawStdEncoding.EncodeToString(h.Salt), base64.RawStdEncoding.EncodeToString(h.Key))
}

func (h phcHash) algorithm() string { return h.Alg }

func (h phcHash) derive(password []byte) []byte {
	if h.Alg == algArgon2i {
		return argon2.Key(password, h.Salt, h.Time, h.Memory, h.Threads, uint32(len(h.Key)))
	}
	return argon2.IDKey(password, h.Salt, h.Time, h.Memory, h.Threads, uint32(len(h.Key)))
}

func (h phcHash) matches(password []byte) bool {
	return subtle.ConstantTimeCompare(h.derive(password), h.Key) == 1
}

// newArgon2id hashes password with p, a fresh SaltLen salt and a KeyLen key.
func newArgon2id(password []byte, p argon2Params) (phcHash, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return phcHash{}, err
	}
	h := phcHash{Alg: algArgon2id, argon2Params: p, Salt: salt}
	h.Key = argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, KeyLen)
	return h, nil
}

func parseBcrypt(s string) (bcryptHash, error) {
	cost, err := bcrypt.Cost([]byte(s))
	if err != nil {
		return bcryptHash{}, fmt.Errorf("bcrypt: %w", err)
	}
	// $2x$NN$ + 22 characters of salt + 31 of hash.
	if len(s) != 60 {
		return bcryptHash{}, fmt.Errorf("bcrypt: want 60 characters, got %d", len(s))
	}
	return bcryptHash{raw: s, cost: cost}, nil
}

func (h bcryptHash) String() string    { return h.raw }
func (h bcryptHash) algorithm() string { return algBcrypt }

func (h bcryptHash) matches(password []byte) bool {
	return bcrypt.CompareHashAndPassword([]byte(h.raw), password) == nil
}

// current reports whether h is an argon2id hash with parameters p and this
// plugin's salt and key sizes; any other hash is re-hashed at sign-in.
func current(h hash, p argon2Params) bool {
	a, ok := h.(phcHash)
	return ok && a.Alg == algArgon2id && a.argon2Params == p && len(a.Salt) == SaltLen && len(a.Key) == KeyLen
}

// checkImport refuses imported hashes whose cost is out of bounds: one
// such hash would make every sign-in of its user slow or memory-hungry.
func checkImport(h hash, p argon2Params) error {
	switch h := h.(type) {
	case phcHash:
		if lim := max(importMaxMemory, p.Memory); h.Memory > lim {
			return fmt.Errorf("argon2: m=%d is above the import limit of %d KiB", h.Memory, lim)
		}
		if lim := max(importMaxTime, p.Time); h.Time > lim {
			return fmt.Errorf("argon2: t=%d is above the import limit of %d", h.Time, lim)
		}
	case bcryptHash:
		if h.cost > importMaxBcryptCost {
			return fmt.Errorf("bcrypt: cost %d is above the import limit of %d", h.cost, importMaxBcryptCost)
		}
	}
	return nil
}
