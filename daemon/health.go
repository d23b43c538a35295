package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
)

// storeHealth is the store's state in /readyz.
type storeHealth string

const (
	storeUp   storeHealth = "up"   // it answered the check in time
	storeDown storeHealth = "down" // it did not: unreachable, not writable or too slow
)

// readiness is /readyz's body: pass or fail, and each component's state
// with its last error (secrets removed).
type readiness struct {
	Status     string          `json:"status"` // "pass" or "fail"
	Components readyComponents `json:"components"`
}

type readyComponents struct {
	Store     storeReady      `json:"store"`
	Providers []providerReady `json:"providers"`
}

type storeReady struct {
	State storeHealth `json:"state"`
	Error string      `json:"error,omitempty"`
}

// providerReady is one provider in /readyz. Attempts counts the starts
// tried since it was last up; Restarts the times it came back after a
// crash.
type providerReady struct {
	Name     string           `json:"name"`
	State    providers.Health `json:"state"`
	Optional bool             `json:"optional"`
	Attempts int              `json:"attempts"`
	Restarts int              `json:"restarts"`
	Error    string           `json:"error,omitempty"`
}

// storeCheckTimeout bounds /readyz's store check.
const storeCheckTimeout = time.Second

func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "pass"})
}

// readyz answers 200 when the daemon can serve: the store answers its
// check within a second and every provider that is not optional is up.
// Otherwise 503. The body lists each component either way.
func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), storeCheckTimeout)
	defer cancel()
	body := readiness{Status: "pass", Components: readyComponents{Store: storeReady{State: storeUp}, Providers: []providerReady{}}}
	var why []string
	if err := d.ping(ctx); err != nil {
		body.Components.Store = storeReady{State: storeDown, Error: d.scrub(err.Error())}
		why = append(why, "store")
	}
	if d.host != nil {
		for _, st := range d.host.Status() {
			pr := providerReady{Name: st.Name, State: st.Health, Optional: st.Optional, Attempts: st.Attempts, Restarts: st.Restarts}
			if st.Health != providers.HealthUp {
				pr.Error = d.scrub(st.LastError)
				if !st.Optional {
					why = append(why, "provider "+st.Name)
				}
			}
			body.Components.Providers = append(body.Components.Providers, pr)
		}
	}
	if len(why) > 0 {
		body.Status = "fail"
		// Probed every few seconds: one line per interval while it lasts.
		d.logLimited(r.Context(), slog.LevelWarn, "not ready", "down", strings.Join(why, ", "))
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// Patterns of secrets an error message may carry whatever the config
// holds: a URL's password and key=value pairs of a DSN.
var (
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*):[^@\s]*@`)
	kvSecret    = regexp.MustCompile(`(?i)\b(password|secret|token|api_key)=("[^"]*"|'[^']*'|\S+)`)
)

// scrub removes secrets from an error message shown by /readyz: every
// secret value of the config (the pepper, the store DSN and its password,
// the providers' secret config values, webhook secrets, SMTP passwords),
// URL passwords and password= pairs.
func (d *Daemon) scrub(msg string) string {
	for _, s := range d.secretValues() {
		msg = strings.ReplaceAll(msg, s, config.Redacted)
	}
	msg = urlPassword.ReplaceAllString(msg, "$1:"+config.Redacted+"@")
	return kvSecret.ReplaceAllString(msg, "$1="+config.Redacted)
}

// secretValues lists the config's secret values, longest first (so a
// secret that contains another is replaced whole), once.
func (d *Daemon) secretValues() []string {
	if s := d.secrets.Load(); s != nil {
		return *s
	}
	s := configSecrets(d.cfg)
	d.secrets.CompareAndSwap(nil, &s)
	return *d.secrets.Load()
}

// addSecrets adds a reloaded config's secret values to those scrub
// removes (the old ones stay: errors may still carry them).
func (d *Daemon) addSecrets(cfg config.Config) {
	for {
		old := d.secrets.Load()
		if old == nil {
			d.secretValues()
			continue
		}
		s := slices.Clone(*old)
		for _, v := range configSecrets(cfg) {
			if !slices.Contains(s, v) {
				s = append(s, v)
			}
		}
		slices.SortFunc(s, func(a, b string) int { return len(b) - len(a) })
		if d.secrets.CompareAndSwap(old, &s) {
			return
		}
	}
}

// configSecrets finds the values that config.Redacted replaces, and the
// password inside the store DSN.
func configSecrets(cfg config.Config) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 4 && !slices.Contains(out, s) { // shorter would shred messages
			out = append(out, s)
		}
	}
	red := cfg.Redacted()
	add(cfg.Tokens.Pepper)
	add(cfg.Store.DSN)
	if u, err := url.Parse(cfg.Store.DSN); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		add(pw)
	}
	for _, m := range kvSecret.FindAllStringSubmatch(cfg.Store.DSN, -1) {
		add(strings.Trim(m[2], `"'`))
	}
	for i, p := range cfg.Providers {
		add(p.Deliver.Webhook.Secret)
		add(p.Deliver.Email.Password)
		if p.Plugin != nil {
			for k, v := range p.Plugin.Env {
				if red.Providers[i].Plugin.Env[k] != v {
					add(v)
				}
			}
		}
		rawSecrets(p.Config, red.Providers[i].Config, add)
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// rawSecrets walks a provider's raw config beside its redacted copy and
// adds every string value the copy replaced.
func rawSecrets(orig, red any, add func(string)) {
	switch o := orig.(type) {
	case map[string]any:
		r, _ := red.(map[string]any)
		for k, v := range o {
			rawSecrets(v, r[k], add)
		}
	case []any:
		r, _ := red.([]any)
		for i, v := range o {
			if i < len(r) {
				rawSecrets(v, r[i], add)
			}
		}
	case string:
		if red == config.Redacted && o != config.Redacted {
			add(o)
		}
	}
}
