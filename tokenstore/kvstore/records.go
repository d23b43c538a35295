package kvstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/handoffd/handoff/tokenstore"
)

// Tokens and sessions, the records every sign-in writes, are stored in a
// compact binary form: a tag byte, then the fields in a fixed order.
// Strings and byte slices are a uvarint length and the bytes, counts a
// uvarint, times a zigzag varint of unix seconds and a uvarint of
// nanoseconds. It is about a third of the JSON's size, so a user's
// records share fewer leaf pages, and it costs a fraction of JSON's CPU
// in the writer. Records written as JSON (before this form, or by layout
// 1) start with '{' and still read; they are rewritten in binary when
// next written. A record must decode exactly, with nothing left over, so
// a new field takes a new tag (and layout), never bytes an older build
// would drop.
const (
	tagToken   byte = 0x01
	tagSession byte = 0x02
)

// errBadRecord means a stored token or session does not decode.
var errBadRecord = errors.New("kvstore: malformed record")

// encodeToken is t's stored form.
func encodeToken(t tokenstore.Token) []byte {
	b := make([]byte, 0, 96+len(t.ID)+len(t.UserID)+len(t.Hash)+len(t.Provider)+len(t.ProviderUID)+
		len(t.ProviderTokens)+len(t.SessionID)+len(t.IP)+len(t.UserAgent))
	b = append(b, tagToken)
	b = appendString(b, t.ID)
	b = appendString(b, t.UserID)
	b = appendBytes(b, t.Hash)
	b = appendTime(b, t.CreatedAt)
	b = appendTime(b, t.Expire)
	b = appendString(b, t.Provider)
	b = appendString(b, t.ProviderUID)
	b = appendBytes(b, t.ProviderTokens)
	b = appendString(b, t.SessionID)
	b = appendString(b, t.IP)
	b = appendString(b, t.UserAgent)
	return binary.AppendUvarint(b, uint64(max(t.Attempts, 0)))
}

// decodeToken reads a token in either stored form.
func decodeToken(raw []byte) (tokenstore.Token, error) {
	return decodeRecord(raw, tagToken, func(r *reader, t *tokenstore.Token) {
		t.ID = r.string()
		t.UserID = r.string()
		t.Hash = r.bytes()
		t.CreatedAt = r.time()
		t.Expire = r.time()
		t.Provider = r.string()
		t.ProviderUID = r.string()
		t.ProviderTokens = r.bytes()
		t.SessionID = r.string()
		t.IP = r.string()
		t.UserAgent = r.string()
		t.Attempts = r.int()
	})
}

// encodeSession is s's stored form.
func encodeSession(s tokenstore.Session) []byte {
	n := 0
	for _, f := range s.Factors {
		n += 1 + len(f)
	}
	b := make([]byte, 0, 96+len(s.ID)+len(s.UserID)+len(s.Hash)+len(s.Provider)+len(s.ProviderUID)+
		len(s.ProviderTokens)+n+len(s.IP)+len(s.UserAgent))
	b = append(b, tagSession)
	b = appendString(b, s.ID)
	b = appendString(b, s.UserID)
	b = appendBytes(b, s.Hash)
	b = appendTime(b, s.CreatedAt)
	b = appendTime(b, s.UpdatedAt)
	b = appendTime(b, s.Expire)
	b = appendString(b, s.Provider)
	b = appendString(b, s.ProviderUID)
	b = appendBytes(b, s.ProviderTokens)
	b = binary.AppendUvarint(b, uint64(len(s.Factors)))
	for _, f := range s.Factors {
		b = appendString(b, f)
	}
	b = appendString(b, s.IP)
	return appendString(b, s.UserAgent)
}

// decodeSession reads a session in either stored form.
func decodeSession(raw []byte) (tokenstore.Session, error) {
	return decodeRecord(raw, tagSession, func(r *reader, s *tokenstore.Session) {
		s.ID = r.string()
		s.UserID = r.string()
		s.Hash = r.bytes()
		s.CreatedAt = r.time()
		s.UpdatedAt = r.time()
		s.Expire = r.time()
		s.Provider = r.string()
		s.ProviderUID = r.string()
		s.ProviderTokens = r.bytes()
		if n := r.int(); n > 0 && n <= len(r.b) { // each factor takes a byte at least
			s.Factors = make([]string, n)
			for i := range s.Factors {
				s.Factors[i] = r.string()
			}
		} else if n > 0 {
			r.fail()
		}
		s.IP = r.string()
		s.UserAgent = r.string()
	})
}

// decodeRecord reads a record of either stored form: JSON, or the binary
// form tagged tag, whose fields read reads in order.
func decodeRecord[T any](raw []byte, tag byte, read func(*reader, *T)) (T, error) {
	var x T
	if isJSON(raw) {
		err := json.Unmarshal(raw, &x)
		return x, err
	}
	r := reader{b: raw}
	r.tag(tag)
	read(&r, &x)
	return x, r.done()
}

// isJSON reports whether raw is a record of the JSON form.
func isJSON(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

// reader decodes the binary form. The first malformed field stops it:
// every later read returns the zero value, and done reports the error.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) fail() { r.bad, r.b = true, nil }

func (r *reader) tag(want byte) {
	if len(r.b) == 0 || r.b[0] != want {
		r.fail()
		return
	}
	r.b = r.b[1:]
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int() int {
	v := r.uvarint()
	if v > math.MaxInt32 {
		r.fail()
		return 0
	}
	return int(v)
}

// field returns the next length-prefixed field, valid while the input is.
func (r *reader) field() []byte {
	n := r.int()
	if n > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.field()) }

// bytes returns a copy of the next field, nil when it is empty (as JSON's
// omitempty leaves it).
func (r *reader) bytes() []byte {
	if v := r.field(); len(v) > 0 {
		return clone(v)
	}
	return nil
}

func (r *reader) time() time.Time {
	sec, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return time.Time{}
	}
	r.b = r.b[n:]
	nsec := r.uvarint()
	if nsec >= uint64(time.Second) {
		r.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// done reports whether the whole record decoded, with nothing left over.
func (r *reader) done() error {
	if r.bad || len(r.b) != 0 {
		return errBadRecord
	}
	return nil
}
