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
// fails when one breaks the house rules of DESIGN.md: plugins import only
// the SDK, tokenstore nothing of ours outside tokenstore, config nothing of
// ours, the SDK not the host or daemon, and the daemon no plugin.
func TestImportRules(t *testing.T) {
	rules := []struct {
		from    string // package path prefix, relative to the module
		allowed func(to string) bool
		why     string
	}{
		{"plugins/", func(to string) bool { return strings.HasPrefix(to, "providers/sdk") }, "plugins import only providers/sdk"},
		{"examples/", func(to string) bool { return strings.HasPrefix(to, "providers/sdk") }, "a third-party plugin imports only providers/sdk"},
		{"tokenstore", func(to string) bool { return strings.HasPrefix(to, "tokenstore") }, "tokenstore imports nothing of ours outside tokenstore/"},
		{"config", func(string) bool { return false }, "config imports nothing of ours"},
		{"providers/sdk", func(to string) bool {
			return strings.HasPrefix(to, "providers/sdk") || strings.HasPrefix(to, "providers/internal/proto")
		}, "the SDK imports neither the host nor the daemon"},
		{"daemon", func(to string) bool { return !strings.HasPrefix(to, "plugins/") }, "the daemon gets built-ins from main.go, never imports a plugin"},
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
				if (pkg == strings.TrimSuffix(r.from, "/") || strings.HasPrefix(pkg+"/", r.from) || strings.HasPrefix(pkg, r.from)) && !r.allowed(to) {
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
