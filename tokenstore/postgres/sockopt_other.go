//go:build !linux

package postgres

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not known; the
// keepalives (see keepAliveIdle) still find a silent peer.
func setUserTimeout(string, string, syscall.RawConn) error { return nil }
