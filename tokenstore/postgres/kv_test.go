package postgres

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestTextPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"ab", "ac", true},
		{"a\u007f", "a\u0080", true},
		{"a\ud7ff", "a\ue000", true},
		{"a\U0010ffff", "b", true},
		{"\U0010ffff\U0010ffff", "", false},
	} {
		if got, ok := textPrefixEnd(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("textPrefixEnd(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestKVListRange: the range of KVList, including an empty key, a prefix
// with the key after it inside or outside the prefix, and paging.
func TestKVListRange(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, k := range []string{"", "a", "ab", "b", "é", "é\U0010ffff"} {
		if err := st.KVPut(ctx, "ns", k, []byte("v"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.KVPut(ctx, "ns", "ac", []byte("gone"), now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 0, []string{"", "a", "ab", "b", "é", "é\U0010ffff"}},
		{"", "", 2, []string{"", "a"}},
		{"", "a", 2, []string{"ab", "b"}},
		{"a", "", 0, []string{"a", "ab"}},
		{"a", "a", 0, []string{"ab"}},
		{"b", "a", 0, []string{"b"}},
		{"a", "b", 0, []string{}},
		{"é", "", 0, []string{"é", "é\U0010ffff"}},
		{"x", "", 0, []string{}},
	} {
		got, err := st.KVList(ctx, "ns", tc.prefix, tc.after, tc.limit, now)
		if err != nil {
			t.Fatal(err)
		}
		keys := []string{}
		for _, e := range got {
			keys = append(keys, e.Key)
		}
		if !slices.Equal(keys, tc.want) {
			t.Errorf("KVList(prefix %q, after %q, limit %d) = %q, want %q", tc.prefix, tc.after, tc.limit, keys, tc.want)
		}
	}
}
