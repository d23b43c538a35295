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

// commitUnknown settles what can be settled about a step whose COMMIT
// was sent and never answered (err): it makes sure the step can no longer
// commit later, then reports tokenstore.ErrCommitUnknown, after which a
// read sees the final outcome. A step travels whole in one round trip
// (BEGIN, its statements, COMMIT), so until then the server process of
// the lost connection (pid) may not have received any of it yet, and
// receive it when a partition heals; or be running it; or be done. Its
// state cannot tell "not yet" from "done" (idle either way), so, on
// another connection and under the store's own timeout, the process is
// given a fifth of the timeout to finish by itself (a server that saw the
// connection close runs what it received, then exits); then it is
// terminated, which ends whatever it holds: a transaction it was inside is
// rolled back, bytes still on their way meet a closed socket, and a
// COMMIT that ran stays committed. (pgx itself, on the broken connection,
// sends the server a cancel request, which may abort the step before its
// COMMIT runs: one more way for the outcome to go either way.) The
// outcome is final once the process is gone. If this cannot be settled in time the error is plain
// ErrUnavailable: the caller must not read back.
//
// The process is found by its pid and our role. A pid is reused only
// after the process exits, which would mean the step had ended.
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

// fence returns once the server process pid is gone.
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
		case *state == "active":
			// Running a statement of the step, perhaps its COMMIT: it
			// ends by itself, or is terminated after the grace.
		}
		if !time.Now().Before(grace) {
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
