// Command lockoutprobe is the built-in password plugin served as an
// external plugin, with a probe on its host KV for the lockout attack test
// (TestPasswordLockoutUnderParallelGuesses). Every read of a user record
// is the step right before a hash compare, in the plugin's code before
// and after the fix alike, so the probe counts compares by those reads:
// it appends a line to $PROBE_DIR/compares for each. Each such read also
// waits until $PROBE_DIR/open exists, so the test can hold every compare
// until all its guesses are in flight.
package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/handoffd/handoff/plugins/password"
	"github.com/handoffd/handoff/providers/sdk"
)

func main() {
	sdk.Serve(func() sdk.Verifier { return probe{password.New().(*password.Verifier)} })
}

// probe is the password verifier (Enroll included) with a probed KV.
type probe struct{ *password.Verifier }

func (p probe) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	if host != nil {
		host = probeHost{kv: probeKV{KV: host.KV(), dir: os.Getenv("PROBE_DIR")}}
	}
	return p.Verifier.Configure(ctx, raw, host)
}

type probeHost struct{ kv sdk.KV }

func (h probeHost) KV() sdk.KV { return h.kv }

type probeKV struct {
	sdk.KV
	dir string
}

func (k probeKV) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "user/") && k.dir != "" {
		f, err := os.OpenFile(filepath.Join(k.dir, "compares"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = f.WriteString("1\n")
			_ = f.Close()
		}
		for {
			if _, err := os.Stat(filepath.Join(k.dir, "open")); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return k.KV.Get(ctx, key)
}
