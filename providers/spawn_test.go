package providers

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScriptAsPathSaysWhatToDo: an interpreted plugin's entry script given
// as the plugin path runs from the private copy, where its imports are
// not; the start error says so and what to configure instead.
func TestScriptAsPathSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(filepath.Join(dir, "lib.sh"), []byte("true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A relative import, resolved as node and python resolve theirs: next to the running file.
	body := "#!/bin/sh\n. \"$(dirname \"$0\")/lib.sh\" || exit 1\nsleep 5\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := newHostTuned(t, Options{}, func(tu *tuning) { tu.startTimeout = 2 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Spawn(Spec{Name: "script", External: &External{Path: script, SHA256: sha256File(t, script)}})
	if err == nil {
		t.Fatal("a shell script passed the handshake")
	}
	for _, want := range []string{"is a script", "private copy", "interpreter", "docs/plugin-protocol.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the start error %q does not say %q", err, want)
		}
	}
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "plugin.path" {
		t.Errorf("the start error is not reported under plugin.path: %v", err)
	}
}
