package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/handoffd/handoff/tokenstore"
)

// The statements. Table names are unqualified: the pool's search_path
// (Options.Schema) says where they live. Each is prepared once per
// connection by pgx's statement cache.
const (
	qBeginWrite = "BEGIN ISOLATION LEVEL SERIALIZABLE"
	qBeginRead  = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
	qCommit     = "COMMIT"
	qLock       = "SELECT pg_advisory_lock($1)"
	qUnlock     = "SELECT pg_advisory_unlock_all()"

	qGet    = "SELECT value FROM handoff_kv WHERE bucket = $1 AND key = $2"
	qTake   = "DELETE FROM handoff_kv WHERE bucket = $1 AND key = $2 RETURNING value"
	qDelete = "DELETE FROM handoff_kv WHERE bucket = $1 AND key = $2"
	qPut    = "INSERT INTO handoff_kv (bucket, key, value, expire) VALUES ($1, $2, $3, $4) " +
		"ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value, expire = EXCLUDED.expire"
	qInsert = "INSERT INTO handoff_kv (bucket, key, value, expire) VALUES ($1, $2, $3, $4) " +
		"ON CONFLICT (bucket, key) DO NOTHING"

	// qSweep deletes a batch of expired rows found through the partial
	// expiry index; rows another sweeper (or a writer) holds are skipped.
	// The rows are deleted by their physical address (a TID scan), so the
	// delete itself never reads the table either.
	qSweep = "DELETE FROM handoff_kv WHERE ctid = ANY(ARRAY(" +
		"SELECT ctid FROM handoff_kv WHERE expire < $1 ORDER BY expire LIMIT $2 FOR UPDATE SKIP LOCKED))"
)

// qScan[after][bounded] reads one page of a bucket in key order: from the
// prefix (key >= $2) or after a key already seen (key > $2), below the
// prefix's upper bound when it has one (key < $3).
var qScan = [2][2]string{
	{
		"SELECT key, value FROM handoff_kv WHERE bucket = $1 AND key >= $2 ORDER BY key LIMIT " + scanPageStr,
		"SELECT key, value FROM handoff_kv WHERE bucket = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT " + scanPageStr,
	},
	{
		"SELECT key, value FROM handoff_kv WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT " + scanPageStr,
		"SELECT key, value FROM handoff_kv WHERE bucket = $1 AND key > $2 AND key < $3 ORDER BY key LIMIT " + scanPageStr,
	},
}

const (
	scanPage    = 256
	scanPageStr = "256"
	// maxPending bounds the writes held back for the next round trip.
	maxPending = 512
)

// errReadOnly is the error of a write inside View.
var errReadOnly = errors.New("postgres: write in a read-only transaction")

// tx is one transaction on one pooled connection.
//
// Round trips are the cost that matters (see doc.go), so the transaction
// is pipelined: BEGIN is not sent on its own but queued ahead of the first
// statement, and writes whose only result is success (Put, Delete) are
// queued too and go out with the next statement that needs an answer (Get,
// Take, Insert, Scan) or with COMMIT. The server runs them in order within
// the transaction, so reads see the writes before them; a queued write that
// fails makes the statement it travels with fail, the transaction is dead
// from then on (err), and Update does not commit it.
type tx struct {
	ctx   context.Context
	conn  *pgx.Conn
	write bool

	begun      bool       // BEGIN is queued or sent
	batch      *pgx.Batch // statements not sent yet
	pending    int        // len of batch
	sent       bool       // something reached the server
	committing bool       // COMMIT has been queued
	err        error      // the first failure; the transaction is dead
	hot        hotRow     // the row a write lost to a concurrent writer
	locked     bool       // holds a session advisory lock (lockRow)

	roundTrips *atomic.Uint64 // the store's counter
}

func newTx(ctx context.Context, conn *pgx.Conn, write bool, roundTrips *atomic.Uint64) *tx {
	return &tx{ctx: ctx, conn: conn, write: write, roundTrips: roundTrips}
}

// queue adds a statement to the next round trip, behind BEGIN when it is
// the first.
func (t *tx) queue(sql string, args ...any) *pgx.QueuedQuery {
	if t.batch == nil {
		t.batch = &pgx.Batch{}
	}
	if !t.begun {
		begin := qBeginRead
		if t.write {
			begin = qBeginWrite
		}
		t.batch.Queue(begin)
		t.begun = true
	}
	t.pending++
	return t.batch.Queue(sql, args...)
}

// send runs the queued statements in one round trip.
func (t *tx) send(op string) error {
	b := t.batch
	t.batch, t.pending = nil, 0
	if b == nil {
		return nil
	}
	t.sent = true
	t.roundTrips.Add(1)
	if err := t.conn.SendBatch(t.ctx, b).Close(); err != nil {
		t.err = fmt.Errorf("postgres: %s: %w", op, err)
		return t.err
	}
	return nil
}

// queueWrite holds a write back for the next round trip, or sends the
// backlog when it has grown long (as deletes of a large prefix do).
func (t *tx) queueWrite(op, sql, bucket string, args ...any) error {
	if t.err != nil {
		return t.err
	}
	if !t.write {
		return errReadOnly
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	key := args[0].([]byte)
	args = append([]any{bucket}, args...)
	t.queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		_, err := br.Exec()
		if err != nil {
			t.lost(bucket, key, err)
		}
		return err
	}
	if t.pending >= maxPending {
		return t.send(op)
	}
	return nil
}

// checkBucket rejects a name the text column cannot hold, before it can
// fail a statement and with it the transaction.
func checkBucket(name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name) {
		return fmt.Errorf("postgres: invalid bucket name %q", name)
	}
	return nil
}

func (t *tx) Get(bucket string, key []byte) ([]byte, error) {
	return t.row("get", qGet, bucket, key)
}

func (t *tx) Take(bucket string, key []byte) ([]byte, error) {
	if !t.write {
		return nil, errReadOnly
	}
	return t.row("take", qTake, bucket, key)
}

// row runs a statement that returns at most one value.
func (t *tx) row(op, sql, bucket string, key []byte) ([]byte, error) {
	if t.err != nil {
		return nil, t.err
	}
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	var (
		v     []byte
		found bool
	)
	t.queue(sql, bucket, nonNil(key)).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		if err != nil && sql == qTake {
			t.lost(bucket, key, err)
		}
		return err
	})
	if err := t.send(op); err != nil {
		return nil, err
	}
	if !found {
		return nil, tokenstore.ErrNotFound
	}
	return nonNil(v), nil
}

func (t *tx) Put(bucket string, key, value []byte, expire time.Time) error {
	return t.queueWrite("put", qPut, bucket, clone(key), nonNil(value), expireArg(expire))
}

func (t *tx) Delete(bucket string, key []byte) error {
	return t.queueWrite("delete", qDelete, bucket, clone(key))
}

func (t *tx) Insert(bucket string, key, value []byte, expire time.Time) error {
	if t.err != nil {
		return t.err
	}
	if !t.write {
		return errReadOnly
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	var inserted bool
	t.queue(qInsert, bucket, nonNil(key), nonNil(value), expireArg(expire)).Fn = func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err != nil {
			t.lost(bucket, key, err)
		}
		inserted = tag.RowsAffected() == 1
		return err
	}
	if err := t.send("insert"); err != nil {
		return err
	}
	if !inserted {
		return tokenstore.ErrExists
	}
	return nil
}

// Scan reads the range a page of scanPage rows at a time, so fn can stop
// early without the rest being read. Each page is read whole before fn
// sees it, which leaves the connection free for fn to use the transaction.
func (t *tx) Scan(bucket string, prefix, after []byte, fn func(key, value []byte) bool) error {
	if t.err != nil {
		return t.err
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	from, strict := nonNil(prefix), 0
	if after != nil && bytes.Compare(after, prefix) >= 0 {
		from, strict = clone(after), 1
	}
	upper := prefixEnd(prefix)
	bounded := 0
	if upper != nil {
		bounded = 1
	}
	type kv struct{ k, v []byte }
	page := make([]kv, 0, 16)
	for {
		page = page[:0]
		args := []any{bucket, from}
		if upper != nil {
			args = append(args, upper)
		}
		t.queue(qScan[strict][bounded], args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var e kv
				if err := rows.Scan(&e.k, &e.v); err != nil {
					return err
				}
				page = append(page, e)
			}
			return rows.Err()
		})
		if err := t.send("scan"); err != nil {
			return err
		}
		for _, e := range page {
			if !fn(e.k, nonNil(e.v)) {
				return nil
			}
		}
		if len(page) < scanPage {
			return nil
		}
		from, strict = page[len(page)-1].k, 1
	}
}

// commit sends what is queued and COMMIT in one round trip. A transaction
// that never asked anything of the server has nothing to commit.
func (t *tx) commit() error {
	if t.err != nil {
		return t.err
	}
	if !t.begun {
		return nil
	}
	t.committing = true
	t.queue(qCommit)
	if t.locked {
		// The row's queue moves on as soon as this commits.
		t.batch.Queue(qUnlock).Fn = func(br pgx.BatchResults) error {
			_, err := br.Exec()
			t.locked = err != nil
			return nil // committed either way; end() retries the unlock
		}
	}
	return t.send("commit")
}

// hotRow is a row that concurrent writers fight over: a failure counter
// under a brute-force attempt, a rate-limit counter, a token many clients
// exchange at once. Under SERIALIZABLE each of them would read it, write
// it, and all but the first fail when the first commits; run again
// together, they fail again, and N writers cost N² attempts. So a writer
// that lost a row takes a session advisory lock on it before its next
// BEGIN: the losers then go one at a time, each with a snapshot taken
// after its predecessor committed, and N writers cost about 2N attempts.
// Writers that have not lost yet take no lock and pay nothing.
type hotRow struct {
	key int64
	ok  bool
}

// lost records that the write of bucket/key failed with a serialization
// failure or a deadlock. Only the statement that failed reports it: pgx
// stops reading a batch at its first error.
func (t *tx) lost(bucket string, key []byte, err error) {
	if retryable(err) {
		h := fnv.New64a()
		h.Write([]byte(bucket))
		h.Write([]byte{0})
		h.Write(key)
		t.hot = hotRow{key: int64(h.Sum64()), ok: true}
	}
}

// lockRow waits for the session advisory lock of hot, before the
// transaction (and so its snapshot) begins.
func (t *tx) lockRow(hot hotRow) error {
	t.roundTrips.Add(1)
	t.sent = true
	if _, err := t.conn.Exec(t.ctx, qLock, hot.key); err != nil {
		t.locked = true // perhaps; end() makes sure
		return fmt.Errorf("postgres: wait for a contended row: %w", err)
	}
	t.locked = true
	return nil
}

// end returns the connection to the pool after rolling back what the
// transaction left open on the server (the pool closes a connection handed
// back inside a transaction) and releasing its row lock. The outcome is
// decided by then, so this runs in the background, off the caller's path,
// and even when ctx has ended; Close waits for it. A connection whose lock
// cannot be released is closed, never pooled.
func (t *tx) end(c *pgxpool.Conn) {
	t.batch = nil
	pc := t.conn.PgConn()
	if t.conn.IsClosed() {
		c.Release()
		return
	}
	var sql string
	if t.sent && pc.TxStatus() != 'I' {
		sql = "ROLLBACK"
	}
	if t.locked {
		sql += ";" + qUnlock
	}
	if sql == "" {
		c.Release()
		return
	}
	t.roundTrips.Add(1)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	go func() {
		defer cancel()
		if _, err := pc.Exec(ctx, strings.TrimPrefix(sql, ";")).ReadAll(); err != nil {
			_ = pc.Close(ctx)
		}
		c.Release()
	}()
}

// prefixEnd returns the smallest key above every key that starts with p,
// or nil when there is none (p empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// expireArg is a zero time as SQL NULL (no expiry).
func expireArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// nonNil maps nil to an empty slice: pgx sends a nil []byte as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func clone(b []byte) []byte { return append([]byte{}, b...) }
