package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/daemon"
	"github.com/handoffd/handoff/tokenstore"
)

// passwordProvider is the name of the self-started daemon's password
// provider, which the flow scenario signs in through.
const passwordProvider = "password"

// selfDaemon is a daemon the bench started in its own process, on a
// temporary data dir.
type selfDaemon struct {
	d     *daemon.Daemon
	dir   string
	url   string
	key   string
	keyID string // a key the bench made itself (revoked at close), if any
	store string
	drop  func() // drops the PostgreSQL schema of the run
	stop  context.CancelFunc
	done  chan error
}

// noLimits raises every abuse limit out of the bench's way, while keeping
// the limiter's bookkeeping on the request path.
var noLimits = config.Limits{Enabled: true, SessionToken: 1 << 30, OAuth2: 1 << 30, JWT: 1 << 30, Verify: 1 << 30}

// DefaultArgon2KiB is the argon2id memory of the bench's password
// provider: 8 KiB, the least the plugin accepts (with insecure_fast), and
// one pass, so the flow measures handoff and the plugin hop, not argon2.
const DefaultArgon2KiB = 8

// benchPasswordConfig is the password plugin with argon2id at kib KiB,
// one pass and one lane: microseconds per hash. insecure_fast allows it;
// only the bench's own temporary daemon uses it.
func benchPasswordConfig(kib int) map[string]any {
	return map[string]any{
		"argon2":        map[string]any{"memory": kib, "time": 1, "threads": 1},
		"insecure_fast": true,
	}
}

// selfConfig is the configuration of the bench's own daemon.
func selfConfig(c Config, dir string, withPassword bool) config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Data = dir
	cfg.Project = c.Project
	cfg.Store.Driver = c.Store
	cfg.Store.DSN = c.DSN
	if c.MaxConns > 0 {
		cfg.Store.MaxConns = c.MaxConns
		cfg.Store.Writers = min(cfg.Store.Writers, c.MaxConns)
	}
	cfg.Limits = noLimits
	cfg.Log.Level = c.LogLevel
	if withPassword {
		kib := c.Argon2KiB
		if kib == 0 { // a Config not from ParseConfig
			kib = DefaultArgon2KiB
		}
		cfg.Providers = []config.Provider{config.Provider{
			Name:    passwordProvider,
			Kind:    "password",
			Config:  benchPasswordConfig(kib),
			Deliver: config.Deliver{Via: "response"},
		}.WithDefaults()}
	}
	return cfg
}

// startSelf starts a daemon in this process on a fresh temporary data dir
// and serves it on a loopback port.
func startSelf(ctx context.Context, c Config, opts Options, withPassword bool) (*selfDaemon, error) {
	if _, ok := opts.Builtins["password"]; withPassword && !ok {
		return nil, errors.New("bench: the flow scenario needs the built-in password plugin, and this binary has none")
	}
	dir, err := os.MkdirTemp(c.Data, "handoff-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: data dir: %w", err)
	}
	cfg := selfConfig(c, dir, withPassword)
	var drop func()
	if c.Store == "postgres" {
		var schema string
		schema, cfg.Store.DSN, drop, err = freshSchema(ctx, c.DSN)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		fmt.Fprintf(logw(opts), "bench: PostgreSQL schema %s for this run (dropped at the end)\n", schema)
		// PostgreSQL needs a secrets key; the fresh schema gets a fresh one.
		cfg.Secrets.KeyFile = filepath.Join(dir, "secrets.key")
		if err := os.WriteFile(cfg.Secrets.KeyFile, []byte(tokenstore.NewSecretKeyLine()), 0o600); err != nil {
			os.RemoveAll(dir)
			drop()
			return nil, fmt.Errorf("bench: secrets key file: %w", err)
		}
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	logger := slog.New(slog.NewTextHandler(logw(opts), &slog.HandlerOptions{Level: level}))
	var notice bytes.Buffer
	d, err := daemon.New(ctx, daemon.Options{Config: cfg, OpenStore: opts.OpenStore, Logger: logger, Notice: &notice, Builtins: opts.Builtins, Executable: opts.Executable})
	if err != nil {
		os.RemoveAll(dir)
		if drop != nil {
			drop()
		}
		return nil, fmt.Errorf("bench: start the daemon: %w", err)
	}
	s := &selfDaemon{d: d, dir: dir, store: c.Store, drop: drop, key: noticeKey(notice.String())}
	if s.key == "" {
		// The store had keys already (a PostgreSQL database used
		// before): make one for this run.
		k, secret, err := d.Core().CreateKey(ctx, "bench", daemon.Scopes, time.Now().Add(24*time.Hour))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("bench: create an API key: %w", err)
		}
		s.key, s.keyID = secret, k.ID
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	s.url = "http://" + ln.Addr().String()
	sctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan error, 1)
	go func() { s.done <- d.Serve(sctx, ln) }()
	if withPassword {
		if err := s.checkProvider(ctx, c.Project, passwordProvider); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// noticeKey finds the API key in daemon.New's first-start notice: the
// indented line.
func noticeKey(notice string) string {
	for _, line := range strings.Split(notice, "\n") {
		if strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "" {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// checkProvider fails unless the named provider is up.
func (s *selfDaemon) checkProvider(ctx context.Context, project, name string) error {
	api := newClient(s.url, project, s.key, 1)
	defer api.close()
	var list struct {
		Providers []struct {
			Name      string `json:"name"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"providers"`
	}
	if err := api.expect(ctx, "list providers", call{method: "GET", path: "/v1/providers", withKey: true}, 200, &list); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, p := range list.Providers {
		if p.Name == name {
			if p.Health != "up" {
				return fmt.Errorf("bench: provider %s is %s: %s", name, p.Health, p.LastError)
			}
			return nil
		}
	}
	return fmt.Errorf("bench: provider %s is not configured", name)
}

func (s *selfDaemon) core() *tokenstore.Core { return s.d.Core() }

// close stops serving, closes the daemon (and its plugins) and removes the
// data dir.
func (s *selfDaemon) close() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	if s.keyID != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.d.Core().RevokeKey(ctx, s.keyID)
		cancel()
	}
	s.d.Close()
	os.RemoveAll(s.dir)
	if s.drop != nil {
		s.drop()
	}
}

func logw(opts Options) io.Writer {
	if opts.Stderr == nil {
		return io.Discard
	}
	return opts.Stderr
}
