package password

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// OWASP's minimum for argon2id (Password Storage Cheat Sheet): 19 MiB,
// two passes, one lane. These are the defaults and, without insecure_fast,
// the floor.
const (
	DefaultMemory  = 19456 // KiB
	DefaultTime    = 2
	DefaultThreads = 1

	// owaspOnePassMemory is the memory at which OWASP allows t=1.
	owaspOnePassMemory = 47104

	maxMemory  = 1 << 20 // KiB: 1 GiB per hash is already far past any sane setting
	maxTime    = 64
	maxThreads = 255

	// SaltLen and KeyLen are the sizes of the salt and the derived key of
	// every hash this plugin makes.
	SaltLen = 16
	KeyLen  = 32

	DefaultMinLength = 8
	DefaultMaxLength = 256
	maxMaxLength     = 4096

	DefaultLockoutAttempts = 5
	DefaultLockoutDuration = 15 * time.Minute
	// NIST SP 800-63B allows at most 100 consecutive failures per account.
	maxLockoutAttempts = 100
	minLockoutDuration = time.Second
	maxLockoutDuration = 24 * time.Hour

	maxMaxConcurrent = 1024
)

// Config is the password provider's config section.
type Config struct {
	// Argon2 are the parameters of new hashes. Stored hashes made with other
	// parameters (or imported bcrypt and argon2i hashes) are re-hashed with
	// these on the next successful sign-in.
	Argon2 Argon2 `json:"argon2"`
	// MinLength is the shortest password Enroll accepts, in characters
	// (Unicode code points). Default 8, as NIST SP 800-63B asks.
	MinLength int `json:"min_length"`
	// MaxLength is the longest password, in bytes; it bounds the hashing
	// cost of a request. Enroll refuses longer ones, and Verify answers
	// invalid credentials for them without hashing. Default 256.
	MaxLength int `json:"max_length"`
	// Lockout locks a username after repeated failures.
	Lockout Lockout `json:"lockout"`
	// MaxConcurrent is how many hashes run at once; more requests wait (as
	// long as their deadline allows) instead of each taking Argon2.Memory
	// of RAM. 0 means GOMAXPROCS: hashing is CPU-bound, so more than one per
	// core adds memory and latency, not throughput.
	MaxConcurrent int `json:"max_concurrent"`
	// InsecureFast lifts the floors on Argon2 and Lockout.Duration, so tests
	// and benchmarks can use tiny parameters. Never set it in production:
	// it makes stolen hashes cheap to crack.
	InsecureFast bool `json:"insecure_fast"`
}

// Argon2 holds argon2id's cost parameters.
type Argon2 struct {
	// Memory in KiB. Default and minimum 19456 (19 MiB).
	Memory int `json:"memory"`
	// Time is the number of passes. Default 2; 1 is allowed from 47104 KiB.
	Time int `json:"time"`
	// Threads is the number of lanes (and goroutines) per hash. Default 1.
	Threads int `json:"threads"`
}

// Lockout is the per-username lockout policy.
type Lockout struct {
	// Attempts is how many failed sign-ins lock a username, 1..100; 0
	// turns lockout off. Default 5.
	Attempts int `json:"attempts"`
	// Duration is how long a lock lasts, and how long a failure is
	// remembered. Default 15m.
	Duration sdk.Duration `json:"duration"`
}

// DefaultConfig returns the defaults: OWASP's argon2id minimum, passwords
// of 8..256, 5 failures lock a username for 15 minutes.
func DefaultConfig() Config {
	return Config{
		Argon2:    Argon2{Memory: DefaultMemory, Time: DefaultTime, Threads: DefaultThreads},
		MinLength: DefaultMinLength,
		MaxLength: DefaultMaxLength,
		Lockout:   Lockout{Attempts: DefaultLockoutAttempts, Duration: sdk.Duration{Duration: DefaultLockoutDuration}},
	}
}

// ParseConfig decodes raw over the defaults and validates it.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every problem of c at once, each a *sdk.ConfigError
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	a := c.Argon2
	switch {
	case a.Threads < 1 || a.Threads > maxThreads:
		bad("argon2.threads", "must be 1..%d, got %d", maxThreads, a.Threads)
	case a.Memory < 8*a.Threads || a.Memory > maxMemory:
		bad("argon2.memory", "must be %d..%d KiB (at least 8 per thread), got %d", 8*a.Threads, maxMemory, a.Memory)
	case a.Memory < DefaultMemory && !c.InsecureFast:
		bad("argon2.memory", "%d KiB is below OWASP's minimum of %d KiB (19 MiB); insecure_fast allows it, for tests only", a.Memory, DefaultMemory)
	}
	switch {
	case a.Time < 1 || a.Time > maxTime:
		bad("argon2.time", "must be 1..%d, got %d", maxTime, a.Time)
	case a.Time < 2 && a.Memory < owaspOnePassMemory && !c.InsecureFast:
		bad("argon2.time", "1 pass needs at least %d KiB of memory (OWASP); use 2, or insecure_fast for tests only", owaspOnePassMemory)
	}
	if c.MinLength < 1 || c.MinLength > maxMaxLength {
		bad("min_length", "must be 1..%d, got %d", maxMaxLength, c.MinLength)
	}
	if c.MaxLength < 1 || c.MaxLength > maxMaxLength {
		bad("max_length", "must be 1..%d bytes, got %d", maxMaxLength, c.MaxLength)
	} else if c.MaxLength < c.MinLength {
		bad("max_length", "%d is below min_length %d", c.MaxLength, c.MinLength)
	}
	if c.Lockout.Attempts < 0 || c.Lockout.Attempts > maxLockoutAttempts {
		bad("lockout.attempts", "must be 1..%d, or 0 to turn lockout off, got %d", maxLockoutAttempts, c.Lockout.Attempts)
	}
	switch d, p := c.Lockout.Duration, c.Lockout.Duration.Check(maxLockoutDuration); {
	case p != "":
		bad("lockout.duration", "%s", p)
	case d.Duration < minLockoutDuration && !c.InsecureFast:
		bad("lockout.duration", "must be at least %s (insecure_fast allows less, for tests only), got %s", minLockoutDuration, d.Duration)
	}
	if c.MaxConcurrent < 0 || c.MaxConcurrent > maxMaxConcurrent {
		bad("max_concurrent", "must be 1..%d, or 0 for GOMAXPROCS, got %d", maxMaxConcurrent, c.MaxConcurrent)
	}
	return errors.Join(errs...)
}

// concurrency is the effective MaxConcurrent.
func (c Config) concurrency() int {
	if c.MaxConcurrent > 0 {
		return c.MaxConcurrent
	}
	return max(1, runtime.GOMAXPROCS(0))
}

// params are the argon2id parameters of new hashes.
func (c Config) params() argon2Params {
	return argon2Params{Memory: uint32(c.Argon2.Memory), Time: uint32(c.Argon2.Time), Threads: uint8(c.Argon2.Threads)}
}
