package kvstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
	"github.com/handoffd/handoff/tokenstore/kvstore"
)

// copyV1 copies tokenstore/bolt's layout 1 fixture (written by the v1
// core) to a new file and returns its path and the session credential
// it records.
func copyV1(t *testing.T) (path, credential string) {
	t.Helper()
	raw, err := os.ReadFile("../bolt/testdata/v1.db")
	must(t, err)
	path = filepath.Join(t.TempDir(), "handoff.db")
	must(t, os.WriteFile(path, raw, 0o600))
	var f struct{ Credential string }
	raw, err = os.ReadFile("../bolt/testdata/v1.json")
	must(t, err)
	must(t, json.Unmarshal(raw, &f))
	return path, f.Credential
}

// sessionHash is the hash SessionByHash takes for a credential.
func sessionHash(t *testing.T, credential string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(credential)
	must(t, err)
	var c struct{ Secret string }
	must(t, json.Unmarshal(raw, &c))
	h := sha256.Sum256([]byte(c.Secret))
	return h[:]
}

var errCrash = errors.New("crash")

// TestMigrateResumes: a migration of one record per transaction that
// stops half-way (as a crash would) leaves a file the next Open finishes,
// with every token and session where layout 3 has it, and the Open after
// that has nothing to do.
func TestMigrateResumes(t *testing.T) {
	ctx := context.Background()
	path, cred := copyV1(t)
	txs := 0
	restore := kvstore.SetMigrateChunk(1, func() error {
		if txs++; txs == 3 {
			return errCrash
		}
		return nil
	})
	defer restore()
	if _, err := bolt.Open(path, bolt.Options{}); !errors.Is(err, errCrash) {
		t.Fatalf("Open with a migration stopped after 3 transactions = %v", err)
	}
	s, err := bolt.Open(path, bolt.Options{})
	must(t, err)
	// Alice: two tokens and a session; Bob: one token. One transaction
	// each, then the empty indexes and the mark.
	if txs < 3+2 {
		t.Fatalf("the migration took %d transactions in all, want one per record", txs)
	}
	for user, want := range map[string]int{"alice": 2, "bob": 1, "carol": 0} {
		toks, err := s.Tokens(ctx, user)
		must(t, err)
		if len(toks) != want {
			t.Fatalf("%s has %d tokens after the migration, want %d", user, len(toks), want)
		}
	}
	u, sess, err := s.SessionByHash(ctx, "alice", sessionHash(t, cred))
	must(t, err)
	if u.ID != "alice" {
		t.Fatalf("the v1 session's user = %q", u.ID)
	}
	got, err := s.Session(ctx, "alice", sess.ID)
	must(t, err)
	if !got.CreatedAt.Equal(sess.CreatedAt) {
		t.Fatalf("Session = %+v", got)
	}
	if n, err := s.DeleteSessions(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("DeleteSessions of the migrated session = %d, %v", n, err)
	}
	must(t, s.Close())

	txs = 0
	s, err = bolt.Open(path, bolt.Options{})
	must(t, err)
	defer s.Close()
	if txs != 0 || s.Stats().Commits != 0 {
		t.Fatalf("an Open of a migrated file ran %d migration transactions, %d commits", txs, s.Stats().Commits)
	}
	if _, _, err := s.SessionByHash(ctx, "alice", sessionHash(t, cred)); !errors.Is(err, tokenstore.ErrSessionNotFound) {
		t.Fatalf("SessionByHash of the deleted session = %v", err)
	}
}

// TestNewerLayout: a file of a layout this code does not know is not
// opened (nor migrated, nor written).
func TestNewerLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.db")
	s, err := bolt.Open(path, bolt.Options{})
	must(t, err)
	must(t, s.Buckets().Update(context.Background(), func(tx kvstore.Tx) error {
		return tx.Put("layout", []byte("version"), []byte("4"), time.Time{})
	}))
	must(t, s.Close())
	_, err = bolt.Open(path, bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), `layout "4"`) {
		t.Fatalf("Open of a layout 4 file = %v", err)
	}
	// The failed Open let go of the file.
	_, err = bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
	if errors.Is(err, bolt.ErrLocked) {
		t.Fatal("a failed Open kept the file locked")
	}
}
