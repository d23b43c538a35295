// Package kvtest is the conformance suite of kvstore.Buckets: what a
// backend's transactions over named buckets must do (reads, writes,
// inserts, takes, scans, rollback, cancellation, the expiry index and its
// sweep, Close) for kvstore's steps to be right on it. Every Buckets
// backend runs it (tokenstore/bolt does, from its tests), beside
// tokenstore/storetest, which checks the typed store built on it.
package kvtest

import (
	"errors"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore/kvstore"
)

// suite is one backend under test.
type suite struct {
	open func(t *testing.T) kvstore.Buckets
}

// test is one named check.
type test struct {
	name string
	fn   func(t *testing.T, s *suite)
}

var tests = []test{
	{"GetAbsent", testGetAbsent},
	{"PutGet", testPutGet},
	{"Insert", testInsert},
	{"Take", testTake},
	{"Delete", testDelete},
	{"Scan", testScan},
	{"ScanStop", testScanStop},
	{"UpdateSeesOwnWrites", testUpdateSeesOwnWrites},
	{"UpdateErrorRollsBack", testUpdateRollback},
	{"ViewIsReadOnly", testViewReadOnly},
	{"CancelledContext", testCancelledContext},
	{"Sweep", testSweep},
	{"SweepLimit", testSweepLimit},
	{"SweepAfterOverwrite", testSweepOverwrite},
	{"SweepBucketsApart", testSweepBuckets},
	{"SweepCounted", testSweepCounted},
	{"Closed", testClosed},
}

// Run runs the suite against the backends open returns. open must return
// a fresh, empty backend each time it is called; Run closes it when the
// test ends (a Close the backend registers itself must tolerate a second
// call).
func Run(t *testing.T, open func(t *testing.T) kvstore.Buckets) {
	s := &suite{open: open}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

// store opens a fresh backend, closed when t ends.
func (s *suite) store(t *testing.T) kvstore.Buckets {
	t.Helper()
	st := s.open(t)
	if st == nil {
		t.Fatal("open returned a nil backend")
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// startTime is where the expiry tests start: the present, to the second.
func startTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

// wantIs fails t unless err matches target.
func wantIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
}

// must fails t on err.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
