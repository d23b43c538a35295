package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
)

// providerSet is the providers the daemon serves, swapped whole by Reload:
// a request reads one set and keeps it, so a reload never shows it half a
// config.
type providerSet struct {
	byName map[string]*provider
	list   []config.Provider // the config's providers section, in order
}

// providerSet returns the current set.
func (d *Daemon) providerSet() *providerSet {
	if s := d.provs.Load(); s != nil {
		return s
	}
	return &providerSet{}
}

// guardOnly is config.Config.GuardOnly over the set's providers.
func (s *providerSet) guardOnly(name string) bool {
	return config.Config{Providers: s.list}.GuardOnly(name)
}

// ErrReloadRefused is returned by Reload for a config it did not apply;
// the daemon serves on with the config it had.
var ErrReloadRefused = errors.New("config reload refused")

// Reload applies cfg's providers section: providers added to it are
// started, those removed are stopped, and those whose section changed in
// any way are restarted with their new section. The rest serve on
// untouched. A new or changed provider is started and checked before it
// takes its name, so a call is answered by the old instance or the new,
// never by none, and the old one is stopped once its calls under way have
// finished.
//
// Only the providers section can change without a restart. A cfg that
// changes anything else (listen, store, secrets, http, ...) is refused
// whole, naming the keys; so is a cfg that fails CheckConfig, and one in
// which a new or changed provider fails its start (an optional provider
// new to the config is added and retried with backoff instead, as at
// start). A refused Reload changes nothing and its error matches
// ErrReloadRefused.
func (d *Daemon) Reload(ctx context.Context, cfg config.Config) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.addSecrets(cfg)
	if keys := restartKeys(d.cfg, cfg); len(keys) > 0 {
		return d.refuseReload("these keys change only with a restart", "keys", strings.Join(keys, ","))
	}
	if err := CheckConfig(ctx, cfg, d.builtins); err != nil {
		return d.refuseReload("the new config is invalid", "err", d.scrub(err.Error()))
	}
	cur := d.providerSet()
	added, changed, removed := diffProviders(cur.list, cfg.Providers)
	if len(added)+len(changed)+len(removed) == 0 {
		d.log.Info("config reloaded: no provider changed")
		return nil
	}
	staged, err := d.stage(ctx, cfg.Providers, added, changed)
	if err != nil {
		d.host.Discard(staged)
		return d.refuseReload("a provider failed its start", "err", d.scrub(err.Error()))
	}
	next, err := d.nextSet(cur, cfg, staged)
	if err == nil {
		err = d.checkPublicURLFor(d.boundAddr(), next)
	}
	if err != nil {
		d.host.Discard(staged)
		return d.refuseReload("the new config is invalid", "err", d.scrub(err.Error()))
	}
	d.provs.Store(next)
	d.host.Swap(staged, removed)
	d.log.Info("config reloaded", "added", added, "changed", changed, "removed", removed)
	return nil
}

// boundAddr holds the address Serve listens on (atomic.Value needs one
// concrete type).
type boundAddr struct{ net.Addr }

// boundAddr returns the address Serve listens on, nil before Serve.
func (d *Daemon) boundAddr() net.Addr {
	b, _ := d.bound.Load().(boundAddr)
	return b.Addr
}

// refuseReload logs why a reload was refused and returns the error.
func (d *Daemon) refuseReload(why string, args ...any) error {
	d.log.Error("config reload refused: "+why+"; serving the config as it was", args...)
	return fmt.Errorf("%w: %s", ErrReloadRefused, why)
}

// stage starts the plugins of the named providers of list, at once, and
// returns them in the order of names. An error names each provider that
// failed; a new optional one that failed is not an error (Swap has it
// retried). On an error the caller discards what was staged.
func (d *Daemon) stage(ctx context.Context, list []config.Provider, added, changed []string) ([]*providers.Provider, error) {
	names := append(slices.Clone(added), changed...)
	staged := make([]*providers.Provider, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		pc := list[slices.IndexFunc(list, func(p config.Provider) bool { return p.Name == name })]
		spec, err := providerSpec(pc)
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			staged[i], errs[i] = d.host.Stage(ctx, spec)
			if errs[i] != nil && staged[i] != nil && pc.Optional && slices.Contains(added, name) {
				d.log.Warn("optional provider failed to start; retrying with backoff", "provider", name, "err", d.scrub(errs[i].Error()))
				errs[i] = nil
			}
			if errs[i] != nil {
				errs[i] = fmt.Errorf("provider %q: %w", name, errs[i])
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(staged, func(p *providers.Provider) bool { return p == nil }), errors.Join(errs...)
}

// nextSet is the provider set of cfg: cur's providers where unchanged,
// staged plugins for the rest. It checks deliver.via against what each
// running plugin reported, as the start does.
func (d *Daemon) nextSet(cur *providerSet, cfg config.Config, staged []*providers.Provider) (*providerSet, error) {
	next := &providerSet{byName: map[string]*provider{}, list: cfg.Providers}
	plugins := map[string]*providers.Provider{}
	for _, p := range staged {
		plugins[p.Name()] = p
	}
	for _, pc := range cfg.Providers {
		plugin, ok := plugins[pc.Name]
		if !ok {
			next.byName[pc.Name] = cur.byName[pc.Name]
			continue
		}
		p, err := d.newProvider(pc)
		if err != nil {
			return nil, err
		}
		p.plugin = plugin
		next.byName[pc.Name] = p
	}
	return next, cfg.ValidateDelivery(func(pc config.Provider) (bool, bool) {
		p := next.byName[pc.Name]
		if p == nil || p.plugin == nil || p.plugin.Health() != providers.HealthUp {
			return false, false
		}
		return p.plugin.Info().ProvesIdentity, true
	})
}

// diffProviders names the providers of next that are not in cur (added),
// those in both whose sections differ in any field (changed), and those of
// cur not in next (removed).
func diffProviders(cur, next []config.Provider) (added, changed, removed []string) {
	old := map[string]config.Provider{}
	for _, p := range cur {
		old[p.Name] = p
	}
	for _, p := range next {
		was, ok := old[p.Name]
		switch {
		case !ok:
			added = append(added, p.Name)
		case !reflect.DeepEqual(was, p):
			changed = append(changed, p.Name)
		}
		delete(old, p.Name)
	}
	for _, p := range cur {
		if _, ok := old[p.Name]; ok {
			removed = append(removed, p.Name)
		}
	}
	return added, changed, removed
}

// restartKeys names the keys outside the providers section whose values
// differ between cur and next: "listen", "store.dsn", "http.write_timeout".
// Keys are named, never values (a value may be a secret).
func restartKeys(cur, next config.Config) []string {
	var keys []string
	a, b := reflect.ValueOf(cur), reflect.ValueOf(next)
	for i := range a.NumField() {
		f := a.Type().Field(i)
		key := f.Tag.Get("koanf")
		if key == "providers" || !f.IsExported() || reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			continue
		}
		keys = append(keys, sectionKeys(key, a.Field(i), b.Field(i))...)
	}
	return keys
}

// sectionKeys names the differing keys of a section, or the section when
// it is no struct or differs only in what has no key.
func sectionKeys(section string, a, b reflect.Value) []string {
	if a.Kind() != reflect.Struct {
		return []string{section}
	}
	var keys []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if !f.IsExported() || reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			continue
		}
		keys = append(keys, section+"."+f.Tag.Get("koanf"))
	}
	if len(keys) == 0 {
		return []string{section}
	}
	return keys
}

// onHUP handles SIGHUP until ctx ends: it reopens the audit log (so
// logrotate can move it away) and reloads the config read by
// Options.Reload. The signal is caught before onHUP returns, so a SIGHUP
// sent once Serve answers never takes the process's default action
// (exit).
func (d *Daemon) onHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.hup(ctx)
			}
		}
	}()
}

// hup is one SIGHUP's work.
func (d *Daemon) hup(ctx context.Context) {
	if d.audit != nil {
		if err := d.ReopenAudit(); err != nil {
			d.log.Error("reopen the audit log", "err", err.Error())
		} else {
			d.log.Info("audit log reopened", "path", d.cfg.Audit.Path)
		}
	}
	if d.load == nil {
		return
	}
	d.log.Info("SIGHUP: reloading the config")
	cfg, err := d.load()
	if err != nil {
		_ = d.refuseReload("the config does not load", "err", d.scrub(err.Error()))
		return
	}
	_ = d.Reload(ctx, cfg)
}
