package sdk

import (
	"encoding/json"
	"testing"
)

func TestClaimReaders(t *testing.T) {
	for in, want := range map[any]string{" alice ": "alice", json.Number("12345"): "12345", 12.0: "", nil: "", true: ""} {
		if got := ClaimString(in); got != want {
			t.Errorf("ClaimString(%#v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[any]bool{true: true, "TRUE": true, "true": true, false: false, "yes": false, 1.0: false, nil: false} {
		if got := ClaimBool(in); got != want {
			t.Errorf("ClaimBool(%#v) = %v, want %v", in, got, want)
		}
	}
}
