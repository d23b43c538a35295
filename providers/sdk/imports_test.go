package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/handoffd/handoff/"

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules enforces the import edges of the plugin contract: the
// SDK (and so every plugin) never pulls in the host, the daemon, the store
// or the config; the example plugin imports nothing of ours but the SDK.
func TestImportRules(t *testing.T) {
	for _, dep := range goList(t, "-deps", module+"providers/sdk") {
		if !strings.HasPrefix(dep, module) {
			continue
		}
		rel := strings.TrimPrefix(dep, module)
		if rel != "providers/sdk" && !strings.HasPrefix(rel, "providers/proto/") && rel != "providers/internal/wire" {
			t.Errorf("providers/sdk depends on %s", rel)
		}
	}
	for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, module+"examples/plugin") {
		if strings.HasPrefix(imp, module) && imp != module+"providers/sdk" {
			t.Errorf("examples/plugin imports %s; a third-party plugin has only the SDK", imp)
		}
	}
	for _, dep := range goList(t, "-deps", module+"providers") {
		for _, bad := range []string{"daemon", "tokenstore", "config", "plugins/"} {
			if strings.HasPrefix(dep, module+bad) {
				t.Errorf("providers depends on %s", dep)
			}
		}
	}
}
