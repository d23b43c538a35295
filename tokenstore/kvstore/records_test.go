package kvstore

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// fullToken and fullSession set every field, so a round trip that drops
// one shows.
func fullToken() tokenstore.Token {
	now := time.Date(2026, 12, 7, 15, 4, 5, 123456789, time.UTC)
	return tokenstore.Token{
		ID: "tok1", UserID: "user1", Hash: []byte{1, 2, 3, 0, 255},
		CreatedAt: now, Expire: now.Add(15 * time.Minute),
		Provider: "auth0", ProviderUID: "auth0|42", ProviderTokens: []byte("sealed"),
		SessionID: "sess1", IP: "2001:db8::1", UserAgent: "Mozilla/5.0 (X11) ünïcode", Attempts: 3,
	}
}

func fullSession() tokenstore.Session {
	now := time.Date(2026, 12, 7, 15, 4, 5, 987654321, time.UTC)
	return tokenstore.Session{
		ID: "sess1", UserID: "user1", Hash: []byte("0123456789abcdef0123456789abcdef"),
		CreatedAt: now, UpdatedAt: now.Add(time.Second), Expire: now.AddDate(1, 0, 0),
		Provider: "oidc", ProviderUID: "sub", ProviderTokens: []byte{0, 1},
		Factors: []string{"oidc", "totp"}, IP: "192.0.2.1", UserAgent: "curl/8",
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	for _, tok := range []tokenstore.Token{fullToken(), {ID: "t", UserID: "u", Hash: []byte{9}}} {
		got, err := decodeToken(encodeToken(tok))
		if err != nil || !reflect.DeepEqual(got, tok) {
			t.Errorf("token round trip = %+v, %v; want %+v", got, err, tok)
		}
	}
	for _, s := range []tokenstore.Session{fullSession(), {ID: "s", UserID: "u", Hash: []byte{9}}} {
		got, err := decodeSession(encodeSession(s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("session round trip = %+v, %v; want %+v", got, err, s)
		}
	}
}

// TestRecordsReadJSON: records stored as JSON, by an earlier build or by
// layout 1, read as they were written.
func TestRecordsReadJSON(t *testing.T) {
	tok, s := fullToken(), fullSession()
	rawTok, _ := json.Marshal(tok)
	rawSess, _ := json.Marshal(s)
	gotTok, err := decodeToken(rawTok)
	if err != nil || !reflect.DeepEqual(gotTok, tok) {
		t.Errorf("JSON token = %+v, %v", gotTok, err)
	}
	gotSess, err := decodeSession(rawSess)
	if err != nil || !reflect.DeepEqual(gotSess, s) {
		t.Errorf("JSON session = %+v, %v", gotSess, err)
	}
}

// TestRecordsRefuseDamage: every truncation, a wrong tag and a trailing
// byte are errors, never a record with fields missing.
func TestRecordsRefuseDamage(t *testing.T) {
	rawTok, rawSess := encodeToken(fullToken()), encodeSession(fullSession())
	for n := range len(rawTok) {
		if _, err := decodeToken(rawTok[:n]); !errors.Is(err, errBadRecord) {
			t.Fatalf("token cut at %d of %d: err = %v", n, len(rawTok), err)
		}
	}
	for n := range len(rawSess) {
		if _, err := decodeSession(rawSess[:n]); !errors.Is(err, errBadRecord) {
			t.Fatalf("session cut at %d of %d: err = %v", n, len(rawSess), err)
		}
	}
	for name, err := range map[string]error{
		"token as session":   second(decodeSession(rawTok)),
		"session as token":   second(decodeToken(rawSess)),
		"token trailing":     second(decodeToken(append(rawTok, 0))),
		"session trailing":   second(decodeSession(append(rawSess, 0))),
		"unknown tag":        second(decodeToken([]byte{0x7f})),
		"huge factor count":  second(decodeSession(hugeFactors())),
		"nanoseconds >= 1 s": second(decodeToken(badNanos())),
	} {
		if !errors.Is(err, errBadRecord) {
			t.Errorf("%s: err = %v, want errBadRecord", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// hugeFactors is a session whose factor count is far beyond its bytes.
func hugeFactors() []byte {
	b := []byte{tagSession}
	b = appendString(b, "s")
	b = appendString(b, "u")
	b = appendBytes(b, []byte{1})
	for range 3 {
		b = appendTime(b, time.Unix(1, 0))
	}
	b = appendString(b, "p")
	b = appendString(b, "")
	b = appendBytes(b, nil)
	return append(b, 0xff, 0xff, 0xff, 0x7f) // 268,435,455 factors
}

// badNanos is a token whose creation time has 10^9 nanoseconds.
func badNanos() []byte {
	b := []byte{tagToken}
	b = appendString(b, "t")
	b = appendString(b, "u")
	b = appendBytes(b, []byte{1})
	b = append(b, 2)                            // 1 s, zigzag
	b = append(b, 0x80, 0x94, 0xeb, 0xdc, 0x03) // 1,000,000,000
	return b
}

// FuzzRecords: no input panics the decoders, and what decodes encodes
// back to the same record.
func FuzzRecords(f *testing.F) {
	f.Add(encodeToken(fullToken()))
	f.Add(encodeSession(fullSession()))
	f.Add([]byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if tok, err := decodeToken(raw); err == nil && !isJSON(raw) {
			if again, err := decodeToken(encodeToken(tok)); err != nil || !reflect.DeepEqual(again, tok) {
				t.Errorf("token %x: re-encoded = %+v, %v", raw, again, err)
			}
		}
		if s, err := decodeSession(raw); err == nil && !isJSON(raw) {
			if again, err := decodeSession(encodeSession(s)); err != nil || !reflect.DeepEqual(again, s) {
				t.Errorf("session %x: re-encoded = %+v, %v", raw, again, err)
			}
		}
	})
}
