package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/handoffd/handoff"

// TestImportRules walks every package's imports (tests included) and
// fails when one breaks the house rules (README "Layout"): plugins import only
// the SDK, tokenstore nothing of ours outside tokenstore, config nothing of
// ours, the SDK not the host or daemon, and the daemon no plugin.
//
// A plugin's tests may also use what a third-party author's tests may: the
// verifier conformance suite (providers/providertest) and the plugin's own
// test helpers below its folder (plugins/oidc/oidctest).
func TestImportRules(t *testing.T) {
	sdkOnly := func(from, to string, test bool) bool {
		if strings.HasPrefix(to, "providers/sdk") {
			return true
		}
		return test && (to == "providers/providertest" || strings.HasPrefix(to, from+"/"))
	}
	rules := []struct {
		from    string // package path prefix, relative to the module
		allowed func(from, to string, test bool) bool
		why     string
	}{
		{"plugins/", sdkOnly, "plugins import only providers/sdk"},
		{"examples/", sdkOnly, "a third-party plugin imports only providers/sdk"},
		{"tokenstore", func(_, to string, _ bool) bool { return strings.HasPrefix(to, "tokenstore") }, "tokenstore imports nothing of ours outside tokenstore/"},
		{"config", func(string, string, bool) bool { return false }, "config imports nothing of ours"},
		{"providers/sdk", func(_, to string, _ bool) bool {
			return strings.HasPrefix(to, "providers/sdk") || strings.HasPrefix(to, "providers/proto") || to == "providers/internal/wire"
		}, "the SDK imports neither the host nor the daemon"},
		{"daemon", func(_, to string, _ bool) bool { return !strings.HasPrefix(to, "plugins/") }, "the daemon gets built-ins from main.go, never imports a plugin"},
	}
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			to, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(to, module+"/") {
				continue
			}
			to = strings.TrimPrefix(to, module+"/")
			checked++
			for _, r := range rules {
				if (pkg == strings.TrimSuffix(r.from, "/") || strings.HasPrefix(pkg+"/", r.from) || strings.HasPrefix(pkg, r.from)) && !r.allowed(pkg, to, strings.HasSuffix(path, "_test.go")) {
					t.Errorf("%s imports %s: %s", path, to, r.why)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no imports of ours were checked")
	}
}
