package postgres

import (
	"context"
	"testing"
	"time"
)

func TestWithSearchPath(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?search_path=s1&sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/db?search_path=s1"},
		{"postgres://u@h/db?search_path=old", "postgres://u@h/db?search_path=s1"},
		{"host=h user=u dbname=db ", "host=h user=u dbname=db search_path=s1"},
	} {
		if got := WithSearchPath(tc.dsn, "s1"); got != tc.want {
			t.Errorf("WithSearchPath(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

// TestTempSchema: the schema exists, a store on the returned DSN puts its
// tables there, and drop leaves nothing behind.
func TestTempSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := testDSN(t)
	name, schemaDSN, drop, err := TempSchema(ctx, dsn, "handoff_tmp_")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Options{DSN: schemaDSN})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, newUser("b")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn := admin(t)
	count := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count() == 0 {
		t.Fatalf("no tables in %s", name)
	}
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&exists); err != nil || exists {
		t.Fatalf("schema %s after drop: exists %v, %v", name, exists, err)
	}
}
