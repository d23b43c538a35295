// Package storetest is the conformance suite every tokenstore.Store backend
// runs, so the embedded and the scale-out store keep one behaviour.
//
// Run checks the raw Store and Tx contract (ordered keys, Insert, the
// atomic Take, Scan with a prefix and a start, the expiry index behind
// Sweep, rollback of a failed Update) and then every rule of the token core
// through tokenstore.New on top of the store, with a fake clock: Mint,
// Exchange, the per-token burn after wrong guesses and the cap on live
// tokens, sessions and their cap, users and their queries, identities and
// linking, the text and sizes they may hold, API keys, JWTs and key rotation,
// the plugins' key-value space and sweeping. With WithReopen it also checks
// what must survive a restart (the pepper, the signing keys, the data).
//
// RunConcurrency races callers against one store: of 64 concurrent
// exchanges of one secret exactly one wins, round after round.
//
// Bench measures the hot paths (Mint, Exchange with 64 concurrent callers,
// Authenticate, IssueJWT) the same way for every backend.
//
// A backend's test wires them up in a few lines:
//
//	func open(t *testing.T) tokenstore.Store {
//		s, err := bolt.Open(filepath.Join(t.TempDir(), "handoff.db"), bolt.Options{})
//		if err != nil {
//			t.Fatal(err)
//		}
//		return s
//	}
//
//	func TestConformance(t *testing.T) { storetest.Run(t, open) }
//
// The package imports only tokenstore and the standard library.
package storetest
