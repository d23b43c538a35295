package providers

import (
	"errors"
	"io/fs"
	"os"
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

// builtinPath is what a built-in plugin executes: the daemon's own
// binary by its /proc link, which names the file this process runs even
// when the path it was started from has been replaced since (an upgrade,
// or an attacker), so a built-in always runs the daemon's own bytes.
func builtinPath() string {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe"
	}
	path, _ := os.Executable()
	return path
}

// noExec reports that files in dir cannot be executed (a noexec mount).
func noExec(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_NOEXEC != 0
}

func ownedByMe(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// textBusy is exec's ETXTBSY: a file just written is still open for
// writing in a process another goroutine forked meanwhile, until that one
// execs (golang.org/issue/22315). Retrying soon succeeds.
func textBusy(err error) bool { return errors.Is(err, syscall.ETXTBSY) }

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
