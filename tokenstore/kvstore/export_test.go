package kvstore

// SetMigrateChunk makes a migration move n records per transaction and
// calls after (when not nil) after each of its transactions, stopping
// where after returns an error, until the returned function puts both
// back.
func SetMigrateChunk(n int, after func() error) (restore func()) {
	oldN, oldAfter := migrateChunk, testHookMigrated
	migrateChunk, testHookMigrated = n, after
	return func() { migrateChunk, testHookMigrated = oldN, oldAfter }
}
