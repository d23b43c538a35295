//go:build !linux

package providers

import (
	"io/fs"
	"os"
	"syscall"
)

// builtinPath is what a built-in plugin executes: the daemon's own binary.
func builtinPath() string {
	path, _ := os.Executable()
	return path
}

func noExec(string) bool { return false }

func ownedByMe(fs.FileInfo) bool { return true }

func textBusy(error) bool { return false }

// sysProcAttr: no Pdeathsig outside Linux; the SDK's parent watchdog makes
// plugins exit when the host is gone.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(int) {}

func waitExited(int) {}

func pidAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	defer p.Release()
	return p.Signal(syscall.Signal(0)) == nil
}
