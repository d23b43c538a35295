package tokenstore

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretKeySize is the length of one key of the secrets key file: an
// AES-256 key.
const SecretKeySize = 32

// A sealed value is sealMagic, the 4-byte id of the key that sealed it, a
// random 12-byte nonce, then the AES-256-GCM ciphertext with its 16-byte
// tag. The associated data binds it to its bucket and key, so a sealed
// value copied to another place does not open.
var sealMagic = []byte("hs1\x00")

const (
	sealKeyIDSize = 4
	sealOverhead  = 4 + sealKeyIDSize + 12 + 16
)

// Sealing sentinels.
var (
	// ErrSealed is a store whose secrets are sealed opened without the
	// key that sealed them.
	ErrSealed = errors.New("the store's secrets are sealed with a key that is not in the secrets key file")
	// ErrSealBroken is a sealed value that does not open: changed,
	// truncated or moved from another key.
	ErrSealBroken = errors.New("a sealed secret does not open (changed, or moved from another place)")
)

// Sealer encrypts the secrets the core keeps in the store (the pepper and
// the signing keys) with AES-256-GCM under keys kept outside the store.
// The first key seals; every key opens, so a key can be rotated.
type Sealer struct {
	aeads []cipher.AEAD
	ids   [][sealKeyIDSize]byte
}

// NewSealer returns a Sealer for keys, each SecretKeySize bytes; the first
// seals. It needs at least one key.
func NewSealer(keys [][]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no secrets key")
	}
	s := &Sealer{}
	for i, k := range keys {
		if len(k) != SecretKeySize {
			return nil, fmt.Errorf("key %d: %d bytes, want %d", i+1, len(k), SecretKeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
		s.ids = append(s.ids, sealKeyID(k))
	}
	return s, nil
}

// sealKeyID names a key in sealed values without revealing it: the first
// bytes of a domain-separated SHA-256.
func sealKeyID(k []byte) [sealKeyIDSize]byte {
	h := sha256.Sum256(append([]byte("handoff secrets key id\x00"), k...))
	return [sealKeyIDSize]byte(h[:sealKeyIDSize])
}

// ParseSecretKeys reads a key file: one key a line, each SecretKeySize
// bytes in standard base64 (what `openssl rand -base64 32` prints). Blank
// lines and lines starting with # are skipped. Errors name the line, never
// its content.
func ParseSecretKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64 (want 32 random bytes as `openssl rand -base64 32` prints them)", n)
		}
		if len(k) != SecretKeySize {
			return nil, fmt.Errorf("line %d: %d bytes, want %d (`openssl rand -base64 32`)", n, len(k), SecretKeySize)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key (want one a line, as `openssl rand -base64 32` prints them)")
	}
	return keys, nil
}

// NewSecretKeyLine returns a fresh key as a key file line.
func NewSecretKeyLine() string {
	k := make([]byte, SecretKeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
	return base64.StdEncoding.EncodeToString(k) + "\n"
}

// sealAD is the associated data of the value under key in bucket, sealed
// under the key whose id is in head (the magic and the id).
func sealAD(bucket string, k, head []byte) []byte {
	ad := append([]byte("handoff sealed\x00"+bucket+"\x00"), k...)
	return append(append(ad, 0), head...)
}

// Seal encrypts plain for its place, bucket and key, under the first key.
func (s *Sealer) Seal(bucket string, k, plain []byte) []byte {
	out := make([]byte, 0, sealOverhead+len(plain))
	out = append(out, sealMagic...)
	out = append(out, s.ids[0][:]...)
	ad := sealAD(bucket, k, out)
	nonce := make([]byte, s.aeads[0].NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return s.aeads[0].Seal(out, nonce, plain, ad)
}

// Open decrypts a value Seal made for bucket and key: with the key its id
// names first, then with the others (two keys may share an id). It also
// reports whether the first key sealed it.
func (s *Sealer) Open(bucket string, k, sealed []byte) (plain []byte, current bool, err error) {
	if !isSealed(sealed) {
		return nil, false, ErrSealBroken
	}
	id := sealed[len(sealMagic) : len(sealMagic)+sealKeyIDSize]
	nonce := sealed[len(sealMagic)+sealKeyIDSize : len(sealMagic)+sealKeyIDSize+12]
	body := sealed[len(sealMagic)+sealKeyIDSize+12:]
	ad := sealAD(bucket, k, sealed[:len(sealMagic)+sealKeyIDSize])
	known := false
	for _, pass := range []bool{true, false} {
		for i, a := range s.aeads {
			if bytes.Equal(id, s.ids[i][:]) != pass {
				continue
			}
			known = known || pass
			if p, err := a.Open(nil, nonce, body, ad); err == nil {
				return p, i == 0, nil
			}
		}
	}
	if !known {
		return nil, false, ErrSealed
	}
	return nil, false, ErrSealBroken
}

// isSealed tells a sealed value from a plain one written before sealing
// existed. No plain secret can pass: the pepper was 32 random bytes
// (shorter than any sealed value) and the signing keys JSON.
func isSealed(v []byte) bool {
	return len(v) >= sealOverhead && bytes.HasPrefix(v, sealMagic)
}
