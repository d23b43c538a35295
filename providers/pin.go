package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// pinned keeps the verified copies of pinned plugin binaries, one per
// SHA-256, in a directory only the daemon's user can enter. A pinned
// plugin never runs from its configured path: the bytes are copied out of
// it and hashed on the way, and it is the copy whose hash matched that
// runs, at the first start and at every restart. Hashing the path and
// then executing the path again (go-plugin's SecureConfig) leaves a window
// in which the file can be swapped or written in place; the copy has none,
// since nobody but the daemon's user can reach it.
type pinned struct {
	mu   sync.Mutex
	log  *slog.Logger
	dir  string // "" until the first stage
	made bool   // dir is ours to remove (a fallback outside the socket dir)
}

// checksumError is a pinned plugin whose binary has another hash.
type checksumError struct{ path, want, got string }

func (e *checksumError) Error() string {
	return fmt.Sprintf("sha256 mismatch for %s: expected %s, actual %s; refusing to run it (if you rebuilt it on purpose, pin the new hash: sha256sum %s)", e.path, e.want, e.got, e.path)
}

// path returns the verified copy of the binary at src pinned to sum (hex
// SHA-256), making it first when there is none. An existing copy is hashed
// again before it is used (a copy removed or damaged meanwhile is made
// again from src, and checked again).
func (p *pinned) path(sockDir, src, sum string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir == "" {
		dir, made, err := stageDir(sockDir, p.log)
		if err != nil {
			return "", err
		}
		p.dir, p.made = dir, made
	}
	dst := filepath.Join(p.dir, sum)
	if got, err := hashFile(dst); err == nil && got == sum {
		return dst, nil
	}
	return dst, stage(src, dst, sum)
}

// close removes the copies.
func (p *pinned) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// stage copies src to dst, hashing the bytes as they are copied, and
// keeps the copy (read and execute for the owner only) only when their
// hash is sum. src is opened once, so what was hashed is what was copied,
// whatever happens to the path meanwhile.
func stage(src, dst, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("plugin binary %s: not a regular file", src)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".stage-*")
	if err != nil {
		return fmt.Errorf("plugin binary: copying %s: %w", src, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	if err == nil {
		err = tmp.Chmod(0o500)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plugin binary: copying %s: %w", src, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return &checksumError{path: src, want: sum, got: got}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("plugin binary: copying %s: %w", src, err)
	}
	return nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stageDir makes the directory for the copies: <sockDir>/bin, private to
// the daemon's user and removed with the socket dir at Close. When the
// socket dir's file system does not allow executing (a noexec /tmp), it
// is <user cache dir>/handoff/h<pid> instead (made reports that Close must
// remove it; a host killed before that has it swept by the next one).
func stageDir(sockDir string, log *slog.Logger) (dir string, made bool, err error) {
	if sockDir == "" {
		return "", false, errors.New("providers: no runtime dir")
	}
	dir = filepath.Join(sockDir, "bin")
	if err := mkPrivate(dir); err != nil {
		return "", false, err
	}
	if !noExec(dir) {
		return dir, false, nil
	}
	_ = os.RemoveAll(dir)
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", false, fmt.Errorf("providers: %s is on a noexec file system, and there is no user cache dir to copy plugin binaries to: %w", sockDir, err)
	}
	parent := filepath.Join(cache, "handoff")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", false, fmt.Errorf("providers: plugin binaries dir: %w", err)
	}
	sweepRuntimeDir(parent, log)
	log.Warn("the runtime dir does not allow executing files; plugin binaries run from a private copy in the user cache dir", "runtime_dir", sockDir, "dir", parent)
	dir = filepath.Join(parent, "h"+strconv.Itoa(os.Getpid()))
	if err := mkPrivate(dir); err != nil {
		return "", false, err
	}
	if noExec(dir) {
		_ = os.RemoveAll(dir)
		return "", false, fmt.Errorf("providers: neither %s nor %s allows executing files; plugin binaries are run from a private copy there", sockDir, parent)
	}
	return dir, true, nil
}

// mkPrivate makes dir (0700) and checks that it, its parent (the host's
// h<pid>) and their parent (the runtime dir) are directories of this user
// that no one else may write to, so nobody else can put a file, or a
// directory, where a verified copy is looked for.
func mkPrivate(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("providers: plugin binaries dir: %w", err)
	}
	for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir), dir} {
		st, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("providers: plugin binaries dir: %w", err)
		}
		if !st.IsDir() || st.Mode().Perm()&0o022 != 0 || !ownedByMe(st) {
			return fmt.Errorf("providers: %s must be a directory of this user that others cannot write to (mode %s)", d, st.Mode())
		}
	}
	return os.Chmod(dir, 0o700)
}

// isScript reports whether the file at path starts with "#!": an
// interpreted plugin's entry file given as the plugin path.
func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2)
	n, _ := io.ReadFull(f, head)
	return n == 2 && string(head) == "#!"
}
