package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/handoffd/handoff/tokenstore/storetest"
)

// dumpTables are the tables Dump reads: the record kind of each (as
// storetest.Dumper names them) and its key columns.
var dumpTables = []struct{ kind, table, key string }{
	{"users", "handoff_users", "id"},
	{"tokens", "handoff_tokens", "user_id, hash"},
	{"sessions", "handoff_sessions", "id"},
	{"identities", "handoff_identities", "provider, subject"},
	{"keys", "handoff_api_keys", "id"},
	{"meta", "handoff_meta", "name"},
	{"kv", "handoff_plugin_kv", "namespace, key"},
	{"limits", "handoff_limits", "key"},
}

// qColumns lists a table's columns in the store's schema, bytea ones
// marked, in their order.
const qColumns = "SELECT column_name, data_type = 'bytea' FROM information_schema.columns " +
	"WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"

// Dump implements storetest.Dumper for the suites: every row of every table, its key
// columns and the rest each as stored (bytea raw, anything else in its
// text form), joined by 0 bytes. It is for tests and inspection, not for
// serving: it reads everything.
func (s *Store) Dump(ctx context.Context) ([]storetest.Record, error) {
	var out []storetest.Record
	for _, tb := range dumpTables {
		var keyExprs, restExprs []string
		err := s.read(ctx, "dump", func(t *txn) error {
			keyExprs, restExprs = nil, nil
			t.queue(qColumns, tb.table).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var (
						name  string
						bytea bool
					)
					if err := rows.Scan(&name, &bytea); err != nil {
						return err
					}
					expr := pgx.Identifier{name}.Sanitize()
					if !bytea {
						expr = "convert_to(" + expr + "::text, 'UTF8')"
					}
					expr = "coalesce(" + expr + ", '')"
					if strings.Contains(", "+tb.key+",", ", "+name+",") {
						keyExprs = append(keyExprs, expr)
					} else {
						restExprs = append(restExprs, expr)
					}
				}
				return rows.Err()
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(keyExprs) == 0 {
			return nil, fmt.Errorf("postgres: dump: table %s not found", tb.table)
		}
		sql := "SELECT " + strings.Join(keyExprs, " || '\\x00'::bytea || ") + ", " +
			strings.Join(restExprs, " || '\\x00'::bytea || ") + " FROM " + tb.table
		err = s.read(ctx, "dump", func(t *txn) error {
			t.queue(sql).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := storetest.Record{Kind: tb.kind}
					if err := rows.Scan(&r.Key, &r.Value); err != nil {
						return err
					}
					out = append(out, r)
				}
				return rows.Err()
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
