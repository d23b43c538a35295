package sdk_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		problem  string
	}{
		{"string", `"1m30s"`, 90 * time.Second, ""},
		{"seconds", `5`, 5 * time.Second, ""},
		{"seconds as a string", `"7"`, 7 * time.Second, ""},
		{"zero", `0`, 0, "must be above 0 and at most 1h0m0s, got 0s"},
		{"over the cap", `"2h"`, 2 * time.Hour, "must be above 0 and at most 1h0m0s, got 2h0m0s"},
		{"not a duration", `"soon"`, 0, `want a duration such as "5s" or whole seconds, got "soon"`},
		{"negative", `-3`, 0, `want a duration such as "5s" or whole seconds, got -3`},
		{"fraction", `1.5`, 0, `want a duration such as "5s" or whole seconds, got 1.5`},
		{"wrong type", `true`, 0, `want a duration such as "5s" or whole seconds, got true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d sdk.Duration
			if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
				t.Fatalf("unmarshal %s: %v (a bad value is for Check to report)", tc.in, err)
			}
			if got := d.Check(time.Hour); got != tc.problem {
				t.Errorf("Check = %q, want %q", got, tc.problem)
			}
			if tc.problem == "" || d.Duration != 0 {
				if d.Duration != tc.want {
					t.Errorf("Duration = %s, want %s", d.Duration, tc.want)
				}
			}
		})
	}
	out, err := json.Marshal(sdk.Duration{Duration: 15 * time.Minute})
	if err != nil || string(out) != `"15m0s"` {
		t.Errorf("marshal = %s, %v", out, err)
	}
}
