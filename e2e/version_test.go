package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFromBuildInfo builds handoff from a git checkout of this
// repository, as a release build would, and wants `handoff version` to
// print the checkout's revision and a module version from the build info,
// not a "dev" set by hand. (A fresh clone: the go command stamps no VCS
// information into a build from a linked worktree.)
func TestVersionFromBuildInfo(t *testing.T) {
	_, err := exec.LookPath("git")
	requireTool(t, err == nil, "git")
	src := filepath.Join(t.TempDir(), "src")
	git := func(args ...string) string {
		out, err := exec.Command("git", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("clone", "--quiet", "..", src)
	rev := git("-C", src, "rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "handoff")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("handoff version: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"revision " + rev + " ", "module   github.com/handoffd/handoff\n", "handoff v"} {
		if !strings.Contains(got, want) {
			t.Errorf("handoff version lacks %q:\n%s", want, got)
		}
	}
}
