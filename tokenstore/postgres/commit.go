package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore"
)

const (
	// qBackend reads the state of the server process that served a lost
	// connection, if it is still there and ours.
	qBackend = "SELECT state FROM pg_stat_activity WHERE pid = $1 AND usename = current_user AND pid <> pg_backend_pid()"
	// qTerminate ends that process, which rolls back its transaction.
	qTerminate = "SELECT pg_terminate_backend($1)"
)

// commitUnknown settles what can be settled about a transaction whose
// COMMIT was sent and never answered (err): it makes sure the transaction
// can no longer commit later, then reports tokenstore.ErrCommitUnknown,
// after which a read sees the final outcome. Until then the server
// process of the lost connection (pid) may still be running the COMMIT,
// or may not have received it yet and receive it when a partition heals.
// So, on another connection and under the store's own timeout: a process
// gone or idle has finished (committed or rolled back); one still inside
// the transaction is terminated, which rolls it back; one running a
// statement (the COMMIT) is waited for. A COMMIT in flight gets a fifth
// of the timeout to arrive before the transaction is ended. If this cannot be settled in time
// the error is plain ErrUnavailable: the caller must not read back.
//
// The process is found by its pid and our role. A pid is reused only
// after the process exits, which would mean the transaction had ended.
func (s *Store) commitUnknown(ctx context.Context, pid uint32, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if ferr := s.fence(ctx, pid); ferr != nil {
		s.log.Warn("postgres commit outcome unknown and not settled", "pid", pid, "err", ferr)
		return fmt.Errorf("%w: %w (and settling it failed: %w)", tokenstore.ErrUnavailable, err, ferr)
	}
	s.log.Info("postgres commit outcome unknown; its transaction has ended", "pid", pid)
	return fmt.Errorf("%w: %w", tokenstore.ErrCommitUnknown, err)
}

// fence returns once the server process pid is gone, idle, or terminated.
func (s *Store) fence(ctx context.Context, pid uint32) error {
	grace := time.Now().Add(s.timeout / 5)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		var state *string
		err := s.pool.QueryRow(ctx, qBackend, int32(pid)).Scan(&state)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil // gone: whatever it did is final
		case err != nil:
			return err
		case state == nil:
			return errors.New("its state is not visible")
		case *state == "idle":
			return nil // between transactions: the COMMIT has run
		case *state == "idle in transaction", *state == "idle in transaction (aborted)":
			// The COMMIT has not arrived. It may be on its way (the
			// connection broke as the server got it), so it has a
			// moment to land; then the transaction is ended before it
			// can.
			if time.Now().Before(grace) {
				break
			}
			if _, err := s.pool.Exec(ctx, qTerminate, int32(pid)); err != nil {
				return fmt.Errorf("terminate: %w", err)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
