package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Scenarios are the loads Run can drive.
var Scenarios = []string{"mint", "exchange", "pairs", "flow", "account"}

// Config is one bench run, as the command line gives it.
type Config struct {
	// Target is a running daemon's base URL; empty starts one in-process.
	Target  string
	Key     string // API key of the target (all scopes)
	Project string

	Scenario string
	Clients  int
	Duration time.Duration
	Warmup   time.Duration
	// Preload is how many live sessions (each with an outstanding token,
	// of a user of its own) to put in the store before measuring.
	Preload int
	// Pool is how many tokens the exchange scenario mints ahead; 0 sizes
	// it for 10,000 exchanges a second over warm-up and duration.
	Pool int

	// Argon2KiB is the argon2id memory of the self-started daemon's
	// password provider (one pass, one lane, insecure_fast).
	Argon2KiB int

	// Provider and Payload drive the flow scenario against a target.
	Provider string
	Payload  string

	// Store and DSN choose the store of the self-started daemon;
	// MaxConns is its store.max_conns (0: the default).
	Store    string
	DSN      string
	MaxConns int

	JSON       bool
	Fsync      bool
	FsyncFor   time.Duration
	Startup    bool
	StartupRun int // starts measured by --startup, the first on a fresh data dir
	CPUProfile string
	// Data is where the self-started daemon's temporary data dir and the
	// fsync probe file go; empty is the system temp dir.
	Data     string
	LogLevel string

	// load says whether a load run was asked for (a scenario given, or
	// neither --fsync nor --startup).
	load bool
}

// Usage is the help of `handoff bench`.
const Usage = `handoff bench: measure a handoff daemon's speed, memory and scale.

Usage:
  handoff bench [--scenario mint|exchange|pairs|flow|account] [--clients 64] [--duration 10s]
                [--warmup 2s] [--preload N] [--json] [--cpuprofile FILE]
                [--store bolt|postgres --dsn DSN] [--data DIR]
  handoff bench --target URL --key KEY [--project default] [--scenario ...]
                [--provider NAME --payload JSON]              (flow against a target)
  handoff bench --fsync [--data DIR]                          fsync rate of this disk
  handoff bench --startup                                     start to ready, idle RSS

Without --target the bench starts a daemon in this process on a temporary
data dir (durable bolt unless --store postgres), with rate limits raised out
of the way and, for flow, the built-in password plugin with tiny argon2
parameters (insecure_fast: never use them for real). Against a target, the
target's limits apply: raise limits.session_token and limits.verify, or
expect 429s.

Scenarios: mint (POST /v1/users/{id}/tokens), exchange (POST
/v1/account/sessions/token of tokens minted ahead), flow (POST
/v1/providers/{name}/verify, then the exchange), account (GET /v1/account
with a session).

Flags:
`

func newFlagSet(c *Config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.StringVar(&c.Target, "target", "", "base URL of a running daemon (default: start one in-process)")
	fs.StringVar(&c.Key, "key", "", "API key of the target, with all scopes (required with --target)")
	fs.StringVar(&c.Project, "project", "default", "project id")
	fs.StringVar(&c.Scenario, "scenario", "exchange", "mint, exchange, pairs (mint then exchange), flow or account")
	fs.IntVar(&c.Clients, "clients", 64, "concurrent clients, each with its own keep-alive connection")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured load before measuring")
	fs.IntVar(&c.Preload, "preload", 0, "live sessions and tokens to put in the store before measuring")
	fs.IntVar(&c.Pool, "pool", 0, "tokens the exchange scenario mints ahead (default: enough for 10,000/s)")
	fs.StringVar(&c.Provider, "provider", "", "provider name for flow against a target (it must deliver via response)")
	fs.StringVar(&c.Payload, "payload", "", "verify payload (JSON object) for flow against a target")
	fs.IntVar(&c.Argon2KiB, "argon2-kib", DefaultArgon2KiB, "argon2id memory (KiB) of the self-started daemon's password provider, one pass (insecure_fast)")
	fs.StringVar(&c.Store, "store", "bolt", "store of the self-started daemon: bolt or postgres")
	fs.StringVar(&c.DSN, "dsn", "", "PostgreSQL DSN for --store postgres")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "store.max_conns of the self-started daemon on --store postgres (default: the config default)")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON on stdout (progress still goes to stderr)")
	fs.BoolVar(&c.Fsync, "fsync", false, "measure the fsync rate of small overwrites in the data dir")
	fs.DurationVar(&c.FsyncFor, "fsync-for", 3*time.Second, "how long --fsync measures")
	fs.BoolVar(&c.Startup, "startup", false, "measure start to ready with the built-in plugins, and idle RSS")
	fs.IntVar(&c.StartupRun, "startup-runs", 4, "starts --startup measures: the first on a fresh data dir, the rest restarts")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured part to FILE (self-started daemon only)")
	fs.StringVar(&c.Data, "data", "", "parent of the temporary data dir, and where --fsync measures (default: the temp dir)")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level of the self-started daemon (logs go to stderr)")
	return fs
}

// ParseConfig reads the command line of `handoff bench`.
func ParseConfig(args []string) (Config, error) {
	var c Config
	fs := newFlagSet(&c)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("bench: %w", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	c.load = fs.Changed("scenario") || !c.Fsync && !c.Startup
	return c, c.validate()
}

// FlagUsage returns the flags' help text.
func FlagUsage() string {
	var c Config
	return newFlagSet(&c).FlagUsages()
}

func (c Config) validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !slices.Contains(Scenarios, c.Scenario) {
		bad("--scenario: want one of %s, got %q", strings.Join(Scenarios, ", "), c.Scenario)
	}
	if c.Clients < 1 {
		bad("--clients: want at least 1, got %d", c.Clients)
	}
	if c.Duration <= 0 {
		bad("--duration: want more than 0, got %s", c.Duration)
	}
	if c.Warmup < 0 {
		bad("--warmup: want 0 or more, got %s", c.Warmup)
	}
	if c.Preload < 0 || c.Pool < 0 {
		bad("--preload and --pool: want 0 or more")
	}
	if c.Argon2KiB < 8 || c.Argon2KiB > 1<<20 {
		bad("--argon2-kib: want 8..%d, got %d", 1<<20, c.Argon2KiB)
	}
	if c.FsyncFor <= 0 {
		bad("--fsync-for: want more than 0, got %s", c.FsyncFor)
	}
	if c.StartupRun < 1 {
		bad("--startup-runs: want at least 1, got %d", c.StartupRun)
	}
	if c.MaxConns < 0 {
		bad("--max-conns: want at least 1, got %d", c.MaxConns)
	}
	switch c.Store {
	case "bolt":
	case "postgres":
		if c.DSN == "" {
			bad("--store postgres needs --dsn")
		}
	default:
		bad("--store: want bolt or postgres, got %q", c.Store)
	}
	if c.Target != "" {
		if c.load && c.Key == "" {
			bad("--target needs --key (an API key with all scopes)")
		}
		if c.load && c.Scenario == "flow" && (c.Provider == "" || c.Payload == "") {
			bad("flow against --target needs --provider NAME and --payload JSON (a provider that delivers via response)")
		}
		if c.CPUProfile != "" {
			bad("--cpuprofile profiles the self-started daemon: it cannot be used with --target")
		}
		if c.Store != "bolt" || c.DSN != "" {
			bad("--store and --dsn choose the self-started daemon's store: not with --target")
		}
	} else if c.Provider != "" || c.Payload != "" {
		bad("--provider and --payload are for flow against --target; the self-started daemon uses its own password provider")
	}
	if c.Payload != "" && (!strings.HasPrefix(strings.TrimSpace(c.Payload), "{") || !jsonValid(c.Payload)) {
		bad("--payload: want a JSON object")
	}
	if c.Data != "" {
		if st, err := os.Stat(c.Data); err != nil || !st.IsDir() {
			bad("--data: %s is not a directory", c.Data)
		}
	}
	if len(errs) > 0 {
		return errors.New("bench: " + strings.Join(errs, "; "))
	}
	return nil
}
