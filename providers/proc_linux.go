package providers

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a plugin in its own process group (so a kill takes its
// helpers too, and a terminal's ^C reaches only the host) and has the
// kernel SIGKILL it when the host's spawner thread dies, including when the
// host is SIGKILLed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// waitExited blocks until pid has exited, without reaping it, so that its
// process group id cannot be reused before killGroup.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
