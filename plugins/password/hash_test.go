package password

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Hashes from the README's import example, with their passwords.
const (
	readmeBcrypt   = "$2a$10$cWqCt0RXr71H5ZawM/6Af.NUucBUzK1P46dNnwoAbJ9YiFW3PKHXO"
	readmeBcryptPW = "bob's old password"
	readmeArgon2   = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY"
	readmeArgon2PW = "carol's old password"
)

var tiny = argon2Params{Memory: 64, Time: 1, Threads: 1}

func TestPHCRoundTrip(t *testing.T) {
	h, err := newArgon2id([]byte("secret password"), tiny)
	if err != nil {
		t.Fatal(err)
	}
	s := h.String()
	if !strings.HasPrefix(s, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(s, "=$") || strings.HasSuffix(s, "=") {
		t.Fatalf("format: %s", s)
	}
	got, err := parsePHC(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != s || got.argon2Params != tiny || !bytes.Equal(got.Salt, h.Salt) || !bytes.Equal(got.Key, h.Key) {
		t.Fatalf("round trip: %+v != %+v", got, h)
	}
	if len(got.Salt) != SaltLen || len(got.Key) != KeyLen {
		t.Fatalf("sizes: salt %d key %d", len(got.Salt), len(got.Key))
	}
	if !got.matches([]byte("secret password")) || got.matches([]byte("secret passworD")) {
		t.Fatal("matches")
	}
	if !current(got, tiny) || current(got, argon2Params{Memory: 64, Time: 2, Threads: 1}) {
		t.Fatal("current")
	}
}

func TestParseHash(t *testing.T) {
	for _, tc := range []struct {
		name, in, alg string
		password      string
	}{
		{"argon2id from the README", readmeArgon2, algArgon2id, readmeArgon2PW},
		// From the reference implementation's CLI (libargon2):
		// echo -n password | argon2 somesalt -i -t 2 -m 16 -p 4 -l 24 -e, and -id ... -l 32 -e.
		{"argon2i reference", "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", algArgon2i, "password"},
		{"argon2id reference", "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo", algArgon2id, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseHash(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if h.algorithm() != tc.alg || h.String() != tc.in {
				t.Fatalf("got %s %s", h.algorithm(), h.String())
			}
			// One check each: these parameters are slow under -race. The
			// cheap hashes of the other tests cover wrong passwords.
			if !h.matches([]byte(tc.password)) {
				t.Fatal("the password does not match")
			}
			if current(h, tiny) {
				t.Fatal("an imported hash is current")
			}
		})
	}
	// The README's bcrypt hash is cost 10, seconds under -race: parse it
	// only. The cost-4 hashes below check bcrypt's matching.
	if h, err := parseHash(readmeBcrypt); err != nil || h.algorithm() != algBcrypt || h.String() != readmeBcrypt {
		t.Fatalf("README bcrypt: %v", err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		t.Run("bcrypt "+prefix, func(t *testing.T) {
			raw, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			s := prefix + string(raw[4:])
			h, err := parseHash(s)
			if err != nil {
				t.Fatal(err)
			}
			if !h.matches([]byte("pw")) || h.matches([]byte("pW")) {
				t.Fatal("matches")
			}
		})
	}
}

func TestParseHashRejects(t *testing.T) {
	const salt, key = "c29tZXNhbHRzb21lc2FsdA", "ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY"
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"plain text", "hunter2"},
		{"md5-crypt", "$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0"},
		{"argon2d", "$argon2d$v=19$m=65536,t=3,p=4$" + salt + "$" + key},
		{"version 16", "$argon2id$v=16$m=65536,t=3,p=4$" + salt + "$" + key},
		{"no version", "$argon2id$m=65536,t=3,p=4$" + salt + "$" + key},
		{"params out of order", "$argon2id$v=19$t=3,m=65536,p=4$" + salt + "$" + key},
		{"leading zero", "$argon2id$v=19$m=065536,t=3,p=4$" + salt + "$" + key},
		{"plus sign", "$argon2id$v=19$m=+65536,t=3,p=4$" + salt + "$" + key},
		{"p zero", "$argon2id$v=19$m=65536,t=3,p=0$" + salt + "$" + key},
		{"p over 255", "$argon2id$v=19$m=65536,t=3,p=256$" + salt + "$" + key},
		{"t zero", "$argon2id$v=19$m=65536,t=0,p=4$" + salt + "$" + key},
		{"m below 8p", "$argon2id$v=19$m=31,t=3,p=4$" + salt + "$" + key},
		{"m over 32 bits", "$argon2id$v=19$m=4294967296,t=3,p=4$" + salt + "$" + key},
		{"keyid", "$argon2id$v=19$m=65536,t=3,p=4,keyid=abc$" + salt + "$" + key},
		{"padded salt", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "==$" + key},
		{"url base64", "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$Rdescudv" + "JCsgt3ub-b-dWRWJTmaaJObG"},
		{"short salt", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$" + key},
		{"short key", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$c2FsdA"},
		{"trailing field", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$" + key + "$"},
		{"bcrypt short", readmeBcrypt[:59]},
		{"bcrypt long", readmeBcrypt + "x"},
		{"bcrypt cost 3", "$2a$03$" + readmeBcrypt[7:]},
		{"bcrypt 2x", "$2x$" + readmeBcrypt[4:]},
		{"huge", "$argon2id$v=19$m=65536,t=3,p=4$" + strings.Repeat("A", 2000) + "$" + key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h, err := parseHash(tc.in); err == nil {
				t.Fatalf("parsed %q as %s", tc.in, h.algorithm())
			}
		})
	}
}

func TestCheckImport(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"argon2 in bounds", readmeArgon2, true},
		{"argon2 memory over the limit", "$argon2id$v=19$m=262145,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY", false},
		{"argon2 time over the limit", "$argon2id$v=19$m=65536,t=17,p=4$c29tZXNhbHRzb21lc2FsdA$ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY", false},
		{"bcrypt 10", readmeBcrypt, true},
		{"bcrypt 15", "$2a$15$" + readmeBcrypt[7:], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseHash(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkImport(h, DefaultConfig().params()); (err == nil) != tc.ok {
				t.Fatalf("checkImport: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	// Configured parameters above the import limits raise them.
	h, _ := parseHash("$argon2id$v=19$m=262145,t=17,p=4$c29tZXNhbHRzb21lc2FsdA$ODLGPgtGJgyH5pKQYs6DLVayR7jWdbc0iV5n3tZIpiY")
	if err := checkImport(h, argon2Params{Memory: 300000, Time: 20, Threads: 1}); err != nil {
		t.Fatal(err)
	}
}

// FuzzParsePHC checks that the parser never panics, and that whatever it
// accepts formats back to the same string (it is canonical) and parses
// again to the same hash.
func FuzzParsePHC(f *testing.F) {
	for _, s := range []string{
		readmeArgon2,
		"$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
		"$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=065536,t=3,p=4$c29tZXNhbHQ$c29tZXNhbHQ",
		"$argon2id$v=19$m=1,t=1,p=1$$",
		"$$$$$",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.String() != s {
			t.Fatalf("not canonical: %q formats as %q", s, h.String())
		}
		again, err := parsePHC(h.String())
		if err != nil || again.argon2Params != h.argon2Params || again.Alg != h.Alg ||
			!bytes.Equal(again.Salt, h.Salt) || !bytes.Equal(again.Key, h.Key) {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}
