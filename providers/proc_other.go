//go:build !linux

package providers

import (
	"os"
	"syscall"
)

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
