package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
)

// CheckStart is `handoff config check`: CheckConfig's checks, and every
// configured provider started once as serve would start it (built-ins by
// re-executing opts.Executable, third-party plugins from their pinned
// copy), configured with its config, asked to Describe itself, and
// stopped. Each problem names its key, such as providers[2].config,
// providers[1].plugin.sha256 or providers[0].plugin.path, and the
// provider. A provider whose name, kind or plugin Validate already
// refused is not started. It returns config.Problems, or nil.
func CheckStart(ctx context.Context, opts Options) error {
	cfg := opts.Config
	var valid config.Problems
	if err := cfg.Validate(); err != nil && !errors.As(err, &valid) {
		return err
	}
	host := providers.New(providers.Options{Builtins: opts.Builtins, Executable: opts.Executable, Logger: opts.Logger, RuntimeDir: opts.RuntimeDir})
	defer host.Close()
	var ps config.Problems
	described := map[string]sdk.Info{}
	for i, pc := range cfg.Providers {
		key := fmt.Sprintf("providers[%d]", i)
		if refusedKey(valid, key) {
			continue
		}
		spec, err := providerSpec(pc)
		if err != nil {
			ps = append(ps, config.Problem{Key: key + ".config", Message: err.Error()})
			continue
		}
		info, err := host.Probe(ctx, spec)
		if err != nil {
			var ke *providers.KeyError
			if errors.As(err, &ke) {
				key += "." + ke.Key
			}
			ps = append(ps, config.Problem{Key: key, Message: fmt.Sprintf("provider %s did not start: %v", pc.Name, err)})
			continue
		}
		described[pc.Name] = info
	}
	builtin := builtinProves(ctx, opts.Builtins)
	// Validate runs again in checkConfig; its problems are reported once.
	return checkConfig(cfg, func(p config.Provider) (bool, bool) {
		if info, ok := described[p.Name]; ok {
			return info.ProvesIdentity, true
		}
		return builtin(p)
	}, ps)
}

// refusedKey reports whether Validate refused the name, kind or plugin of
// the provider at key: starting it would only say so again.
func refusedKey(ps config.Problems, key string) bool {
	for _, p := range ps {
		for _, sub := range []string{"", ".name", ".kind", ".plugin"} {
			if p.Key == key+sub || strings.HasPrefix(p.Key, key+sub+".") {
				return true
			}
		}
	}
	return false
}
