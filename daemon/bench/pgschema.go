package bench

import (
	"context"

	"github.com/handoffd/handoff/tokenstore/postgres"
)

// freshSchema creates a schema of its own for one bench run in the
// database of dsn, and returns its name, dsn with that schema as its
// search_path, and a func that drops it with everything in it. Runs then
// start from empty tables and leave nothing behind.
func freshSchema(ctx context.Context, dsn string) (string, string, func(), error) {
	name, schemaDSN, drop, err := postgres.TempSchema(ctx, dsn, "handoff_bench_")
	if err != nil {
		return "", "", nil, err
	}
	return name, schemaDSN, func() { _ = drop() }, nil
}
