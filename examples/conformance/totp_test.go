package conformance

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/providertest"
	"github.com/handoffd/handoff/providers/sdk"
)

// totpCode is the RFC 6238 code (HMAC-SHA-1, 30 s steps, 6 digits) of a
// base32 secret (padded or not, any case) at a time: what an
// authenticator app shows. It is written here from the RFC, not taken
// from a plugin, so every example is checked against the same reference.
func totpCode(secretBase32 string, at time.Time) string {
	s := strings.ToUpper(strings.TrimRight(secretBase32, "="))
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("totpCode: secret is not base32: %v", err))
	}
	var step [8]byte
	binary.BigEndian.PutUint64(step[:], uint64(at.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(step[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	n := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", n%1_000_000)
}

func TestTOTPCodeRFC6238(t *testing.T) {
	// RFC 6238 appendix B, SHA-1: the secret is "12345678901234567890"; the
	// RFC lists 8 digits, a 6-digit code is their last 6.
	secret := base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))
	for unix, want := range map[int64]string{
		59: "94287082", 1111111109: "07081804", 1111111111: "14050471",
		1234567890: "89005924", 2000000000: "69279037", 20000000000: "65353130",
	} {
		if got := totpCode(secret, time.Unix(unix, 0)); got != want[2:] {
			t.Errorf("T=%d: %s, want %s", unix, got, want[2:])
		}
	}
	if got := totpCode(strings.ToLower(strings.TrimRight(secret, "=")), time.Unix(59, 0)); got != "287082" {
		t.Errorf("unpadded lower-case secret: %s", got)
	}
}

// conformanceUser is the user validTOTP enrolls.
const conformanceUser = "conformance-user"

// validTOTP is the Suite.Valid of every TOTP example: it enrolls a user
// through c (Enroll with `{}` answers `{"secret", "otpauth_url"}`) and
// returns a verify payload `{"userId", "code"}` with the current code.
func validTOTP(t *testing.T, c providertest.Conn) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: conformanceUser, Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	var enrolled struct {
		Secret     string `json:"secret"`
		OTPAuthURL string `json:"otpauth_url"`
	}
	if err := json.Unmarshal(res.Data, &enrolled); err != nil || enrolled.Secret == "" || !strings.HasPrefix(enrolled.OTPAuthURL, "otpauth://totp/") {
		t.Fatalf("Enroll answered %s (%v); want {\"secret\": ..., \"otpauth_url\": \"otpauth://totp/...\"}", res.Data, err)
	}
	payload, err := json.Marshal(map[string]string{"userId": conformanceUser, "code": totpCode(enrolled.Secret, time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	return payload
}
