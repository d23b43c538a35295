// Command handoff is a pluggable auth bridge: verifier plugins prove who
// someone is, the token core mints a one-time secret, and clients exchange
// it for a session with the REST calls of Appwrite's and Nuvix's SDKs.
//
// main only wires: it reads the command line, loads the config, hands the
// built-in plugins to the daemon and turns signals into a context.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/daemon"
	"github.com/handoffd/handoff/daemon/bench"
	"github.com/handoffd/handoff/plugins/biometric"
	"github.com/handoffd/handoff/plugins/captcha"
	"github.com/handoffd/handoff/plugins/oauth2"
	"github.com/handoffd/handoff/plugins/oidc"
	"github.com/handoffd/handoff/plugins/password"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
	"github.com/handoffd/handoff/tokenstore/postgres"
)

// builtins are the verifier kinds inside this binary. Each still runs out
// of process: the daemon re-executes `handoff plugin <kind>`, which serves
// the kind's factory exactly as a third-party plugin's main does.
var builtins = map[string]sdk.Factory{
	"biometric": biometric.New,
	"captcha":   captcha.New,
	"oauth2":    oauth2.New,
	"oidc":      oidc.New,
	"password":  password.New,
}

// version, when set at build time with -ldflags "-X main.version=...",
// is printed instead of the module version of the build info.
var version = ""

const usage = `handoff: a pluggable auth bridge with Appwrite-compatible sessions.

Usage:
  handoff serve [--config F] [--listen ADDR] [--data DIR]     run the daemon
          [--bootstrap-key-file F]                              write the first API key to F (0600), not stderr
  handoff keys create --name N --scopes a,b [--expire 720h]     create an API key (printed once)
  handoff keys list                                             list API keys
  handoff keys revoke ID                                        revoke an API key
  handoff keys rotate-signing                                   make a new JWT signing key
  handoff secrets reencrypt                                     seal the store's secrets under secrets.key_file's first key
  handoff config check [--print]                                validate the config, start every provider once (and print it)
  handoff bench [--scenario exchange] [--target URL --key K]    measure speed and memory (bench --help)
  handoff version                                               print the module version and VCS revision
  handoff plugin KIND                                           serve a built-in plugin (started by the daemon)
  handoff help [COMMAND]                                        this help, or a command's (also COMMAND --help)

Every command takes --config F (default handoff.yaml when present) and
--data DIR; every config key can be set by env, e.g. HANDOFF_STORE__PATH.
A bare "handoff" prints this help; "handoff --listen ADDR ..." (flags
first) still means serve.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) || args[0] == "help" && (len(args) == 1 || args[1] == "help") {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd := "serve"
	if !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" { // handoff help COMMAND is COMMAND --help
		cmd, args = args[0], []string{"--help"}
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stderr)
	case "keys":
		err = keys(args, stdout)
	case "secrets":
		err = secretsCmd(args, stdout)
	case "config":
		err = configCmd(args, stdout)
	case "plugin":
		err = servePlugin(args)
	case "bench":
		err = benchCmd(args, stdout, stderr)
	case "version":
		err = versionCmd(args, stdout)
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	var help helpRequest
	if errors.As(err, &help) {
		fmt.Fprint(stdout, commandHelp(cmd, help.fs))
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "handoff:", err)
		return 1
	}
	return 0
}

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" }

// helpRequest is a command's answer to -h or --help: run prints the
// command's help on stdout and exits 0, as an asked-for help is no error.
type helpRequest struct{ fs *pflag.FlagSet }

func (helpRequest) Error() string { return "help requested" }

// parse parses a command's flags, turning -h and --help into a
// helpRequest (pflag would print the flags on stderr and fail).
func parse(fs *pflag.FlagSet, args []string) error {
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		return helpRequest{fs}
	}
	return err
}

// commandHelp is the help of one command: its lines of the usage, then
// its flags.
func commandHelp(cmd string, fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  handoff "):
			in = strings.HasPrefix(line, "  handoff "+cmd+" ") || line == "  handoff "+cmd
		case !strings.HasPrefix(line, "          "):
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if fs != nil && fs.HasFlags() {
		b.WriteString("\nFlags:\n" + fs.FlagUsages())
	}
	return b.String()
}

// versionCmd is `handoff version`: the module version and the VCS
// revision the go command stamped into the binary.
func versionCmd(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("version", pflag.ContinueOnError)
	if err := parse(fs, args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(bi, version))
	return nil
}

// versionText renders the build info: the module version (or the one set
// by -ldflags), the VCS revision with its time and whether the tree was
// modified, and the Go version. A binary built without VCS stamping (go
// run, -buildvcs=false, outside a repository) says so.
func versionText(bi *debug.BuildInfo, override string) string {
	mod, ver, goVer := "github.com/handoffd/handoff", "(unknown)", runtime.Version()
	settings := map[string]string{}
	if bi != nil {
		if bi.Main.Path != "" {
			mod = bi.Main.Path
		}
		if bi.Main.Version != "" {
			ver = bi.Main.Version
		}
		goVer = bi.GoVersion
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if override != "" {
		ver = override
	}
	rev := settings["vcs.revision"]
	switch {
	case rev == "":
		rev = "unknown (built without VCS information)"
	case settings["vcs.modified"] == "true":
		rev += " (modified)"
	}
	if t := settings["vcs.time"]; t != "" {
		rev += " " + t
	}
	return fmt.Sprintf("handoff %s\nmodule   %s\nrevision %s\ngo       %s\n", ver, mod, rev, goVer)
}

// flags are the flags every command shares.
func flags(name string) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	path := fs.String("config", "", "config file (YAML or TOML; default handoff.yaml when present)")
	fs.String("listen", "", "HTTP listen address (listen)")
	fs.String("data", "", "data directory (data)")
	fs.String("project", "", "project id (project)")
	return fs, path
}

func load(fs *pflag.FlagSet, path string) (config.Config, error) {
	return config.Load(config.LoadOptions{Path: path, DefaultPath: "handoff.yaml", Flags: fs})
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stderr io.Writer) error {
	fs, path := flags("serve")
	fs.String("bootstrap-key-file", "", "write the first API key to this new 0600 file instead of stderr (secrets.bootstrap_key_file)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := load(fs, *path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload := func() (config.Config, error) { return load(fs, *path) } // SIGHUP: the same file, environment and flags
	d, err := daemon.New(ctx, daemon.Options{Config: cfg, OpenStore: openStore, Logger: newLogger(cfg, stderr), Notice: stderr, Builtins: builtins, Reload: reload})
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Run(ctx)
}

// servePlugin is `handoff plugin <kind>`: the daemon starts it, never a
// person. It serves the built-in kind over go-plugin until the daemon stops
// it.
func servePlugin(args []string) error {
	if len(args) == 1 && isHelp(args[0]) {
		return helpRequest{}
	}
	if len(args) != 1 {
		return errors.New("plugin: want one kind")
	}
	f, ok := builtins[args[0]]
	if !ok {
		return fmt.Errorf("plugin: no built-in kind %q", args[0])
	}
	sdk.Serve(f)
	return nil
}

// benchCmd is `handoff bench`. It hands the bench this binary and its
// built-in map, so a daemon the bench starts runs the real plugins.
func benchCmd(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return bench.Main(ctx, args, bench.Options{Builtins: builtins, OpenStore: openStore, Executable: exe, Stdout: stdout, Stderr: stderr})
}

// openStore opens the store cfg.Store names: the embedded bolt file by
// default, or PostgreSQL, whose tables live in the DSN's search_path (a
// search_path parameter of the DSN picks a schema; it must exist). It is
// the one place that knows the backends; the daemon takes what it opens.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (tokenstore.Store, error) {
	switch cfg.Store.Driver {
	case "", "bolt":
		return bolt.Open(cfg.StorePath(), bolt.Options{Timeout: time.Second})
	case "postgres":
		return postgres.Open(ctx, postgres.Options{DSN: cfg.Store.DSN, MaxConns: int32(cfg.Store.MaxConns), Writers: cfg.Store.Writers, Timeout: cfg.Store.Timeout, Logger: log})
	}
	return nil, fmt.Errorf("store driver %q is not supported", cfg.Store.Driver)
}

// withCore opens the configured store for a one-off command.
func withCore(fs *pflag.FlagSet, path string, fn func(context.Context, config.Config, *tokenstore.Core) error) error {
	cfg, err := load(fs, path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	core, err := daemon.OpenCore(ctx, cfg, openStore)
	if err != nil {
		return err
	}
	defer core.Store().Close()
	return fn(ctx, cfg, core)
}

// audit records a key command's event in the audit log (audit.sink), with
// the stdout sink on stderr, where it cannot mix with a printed key. The
// change is made either way: a failure is a warning.
func audit(cfg config.Config, event, keyID string) {
	if err := daemon.AuditCLI(cfg, os.Stderr, event, keyID); err != nil {
		fmt.Fprintf(os.Stderr, "handoff: warning: %s not written to the audit log: %v\n", event, err)
	}
}

func keys(args []string, stdout io.Writer) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs, path := flags(strings.TrimSpace("keys " + sub))
	name := fs.String("name", "", "key name (create)")
	scopes := fs.String("scopes", strings.Join(daemon.Scopes, ","), "comma-separated scopes (create): "+strings.Join(daemon.Scopes, ", "))
	expire := fs.Duration("expire", 0, "lifetime of the key (create); 0 never expires")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains([]string{"create", "list", "revoke", "rotate-signing"}, sub) {
		return fmt.Errorf("keys: want create, list, revoke or rotate-signing, got %q", sub)
	}
	return withCore(fs, *path, func(ctx context.Context, cfg config.Config, core *tokenstore.Core) error {
		switch sub {
		case "create":
			if *name == "" {
				return errors.New("keys create: --name is required")
			}
			list := strings.Split(*scopes, ",")
			for _, s := range list {
				if !slices.Contains(daemon.Scopes, s) {
					return fmt.Errorf("keys create: unknown scope %q (known: %s)", s, strings.Join(daemon.Scopes, ", "))
				}
			}
			var exp time.Time
			if *expire > 0 {
				exp = time.Now().Add(*expire)
			}
			k, secret, err := core.CreateKey(ctx, *name, list, exp)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, secret)
			audit(cfg, "key.created", k.ID)
		case "list":
			ks, err := core.ListKeys(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tEXPIRES")
			for _, k := range ks {
				exp := "never"
				if !k.Expire.IsZero() {
					exp = tokenstore.FormatTime(k.Expire)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), tokenstore.FormatTime(k.CreatedAt), exp)
			}
			return tw.Flush()
		case "revoke":
			if fs.NArg() != 1 {
				return errors.New("keys revoke: want one key ID (see keys list)")
			}
			if err := core.RevokeKey(ctx, fs.Arg(0)); errors.Is(err, tokenstore.ErrNotFound) {
				return fmt.Errorf("keys revoke: no key with ID %q", fs.Arg(0))
			} else if err != nil {
				return err
			}
			audit(cfg, "key.revoked", fs.Arg(0))
			fmt.Fprintln(stdout, "revoked", fs.Arg(0))
		case "rotate-signing":
			kid, err := core.RotateSigningKey(ctx)
			if err != nil {
				return err
			}
			audit(cfg, "signing_key.rotated", kid)
			fmt.Fprintln(stdout, "new signing key", kid)
		}
		return nil
	})
}

// secretsCmd is `handoff secrets reencrypt`: after a new key went first
// into secrets.key_file, it seals every secret of the store under it, so
// the old key can leave the file.
func secretsCmd(args []string, stdout io.Writer) error {
	fs, path := flags("secrets reencrypt")
	if len(args) > 0 && args[0] == "reencrypt" {
		args = args[1:]
	} else if len(args) == 0 || !isHelp(args[0]) {
		return errors.New("secrets: want reencrypt")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	return withCore(fs, *path, func(ctx context.Context, _ config.Config, core *tokenstore.Core) error {
		n, err := core.ResealSecrets(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sealed %d secrets again under the first key of secrets.key_file; every secret now opens with it alone\n", n)
		return nil
	})
}

func configCmd(args []string, stdout io.Writer) error {
	fs, path := flags("config check")
	print := fs.Bool("print", false, "print the effective config (secrets redacted)")
	if len(args) > 0 && args[0] == "check" {
		args = args[1:]
	} else if len(args) == 0 || !isHelp(args[0]) {
		return errors.New("config: want check")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := load(fs, *path)
	if err != nil {
		return err
	}
	if err := daemon.CheckStart(context.Background(), daemon.Options{Config: cfg, OpenStore: openStore, Builtins: builtins}); err != nil {
		return err
	}
	if err := daemon.CheckSecretsKeyFile(cfg); err != nil {
		return err
	}
	if *print {
		out, err := config.Effective(cfg)
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	}
	fmt.Fprintln(stdout, "config ok")
	return nil
}
