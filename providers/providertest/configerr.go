package providertest

import (
	"errors"
	"testing"

	"github.com/handoffd/handoff/providers/sdk"
)

// ConfigErrorKeys returns the keys of the config errors in err, in order:
// one for each *sdk.ConfigError that a config decoder or Validate joined
// (errors.Join), so a test can check that every problem was reported under
// its key. It fails the test when err holds an error that is not a
// *sdk.ConfigError.
func ConfigErrorKeys(t testing.TB, err error) []string {
	t.Helper()
	var keys []string
	for _, e := range leaves(err) {
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *sdk.ConfigError", e)
		}
		keys = append(keys, ce.Key)
	}
	return keys
}

// leaves flattens joined errors.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
