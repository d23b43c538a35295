//go:build unix

package daemon

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/handoffd/handoff/config"
)

// TestAuditReopenOnSIGHUP: the real signal, as logrotate's postrotate
// sends it to a serving daemon.
func TestAuditReopenOnSIGHUP(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newTestServer(t, func(c *config.Config) {
		c.Audit.Sink, c.Audit.Path = config.AuditFile, auditPath
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.d.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	s.URL = "http://" + ln.Addr().String()
	waitFor(t, func() bool {
		res, err := http.Get(s.URL + "/healthz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(auditPath); return err == nil })
	s.createUser("afterhup", "")
	s.d.Close()
	if fresh := readAudit(t, auditPath); len(fresh) != 1 || fresh[0]["user_id"] != "afterhup" {
		t.Fatalf("new file after SIGHUP: %v", fresh)
	}
}
