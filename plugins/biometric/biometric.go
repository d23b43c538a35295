package biometric

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ sdk.Verifier = (*Verifier)(nil)
	_ sdk.Enroller = (*Verifier)(nil)
)

// Version is the plugin's version, reported in Describe.
const Version = "1.0.0"

// Keys in the host KV.
const (
	// seenPrefix keys the webhook-ids of responses already accepted:
	// seen/<hex sha256 of the id>, kept for twice the tolerance.
	seenPrefix = "seen/"
	// userPrefix keys the subject the vendor enrolled for a user:
	// user/<user id>.
	userPrefix = "user/"
)

const (
	maxResponse   = 64 << 10
	maxIDLen      = 256 // user ids and subjects, in bytes
	maxReasonLen  = 100
	typeVerify    = "verify"
	typeEnroll    = "enroll"
	requestIDSize = 16 // random bytes
)

// Verifier forwards biometric samples to a vendor over signed HTTP. It is
// safe for concurrent use once configured.
type Verifier struct {
	cfg     Config
	signer  *standardwebhooks.Webhook // signs requests
	checker *standardwebhooks.Webhook // checks responses
	headers http.Header
	kv      sdk.KV
	client  *http.Client
}

// New makes an unconfigured biometric verifier (an sdk.Factory).
func New() sdk.Verifier { return &Verifier{} }

// Describe reports the plugin: direct flow, proves identity, enrolls.
func (v *Verifier) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "biometric", Version: Version, Flows: []string{sdk.FlowDirect}, ProvesIdentity: true}, nil
}

// Configure reads the config and the secrets.
func (v *Verifier) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	cfg, err := ParseConfig(raw)
	if err != nil {
		return err
	}
	reqSecret, respSecret, err := cfg.secrets()
	if err != nil {
		return err
	}
	if host == nil {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "biometric: the host offers no KV, and the plugin keeps replay marks there"}
	}
	signer, err := standardwebhooks.NewWebhook(reqSecret)
	if err != nil {
		return &sdk.ConfigError{Key: "secret", Message: "not a Standard Webhooks secret"}
	}
	checker, err := standardwebhooks.NewWebhook(respSecret)
	if err != nil {
		return &sdk.ConfigError{Key: "response_secret", Message: "not a Standard Webhooks secret"}
	}
	headers := http.Header{}
	for k, val := range cfg.Headers {
		headers.Set(k, val)
	}
	if v.client != nil {
		v.client.CloseIdleConnections()
	}
	v.cfg, v.signer, v.checker, v.headers, v.kv = cfg, signer, checker, headers, host.KV()
	v.client = &http.Client{
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		// The request carries the sample and the vendor's API key: never
		// resend it elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// vendorRequest is what the plugin POSTs to the vendor.
type vendorRequest struct {
	Type      string          `json:"type"` // verify or enroll
	RequestID string          `json:"request_id"`
	UserID    string          `json:"user_id,omitempty"`
	Subject   string          `json:"subject,omitempty"`
	Payload   json.RawMessage `json:"payload"`
}

// vendorResponse is the vendor's signed answer, to verify and to enroll.
type vendorResponse struct {
	RequestID string   `json:"request_id"`
	Verified  bool     `json:"verified"`
	Enrolled  bool     `json:"enrolled"`
	Subject   string   `json:"subject"`
	Score     *float64 `json:"score"`
	Reason    string   `json:"reason"`
}

// verifyPayload is the client's Verify payload. Other fields (a guard's
// token) are ignored.
type verifyPayload struct {
	UserID  string          `json:"userId"`
	Subject string          `json:"subject"`
	Sample  json.RawMessage `json:"sample"`
}

// enrollPayload is an Enroll payload; other fields are refused.
type enrollPayload struct {
	Sample json.RawMessage `json:"sample"`
}

// Verify forwards {userId?, subject?, sample} to the vendor and returns
// Identity{Subject: the vendor's subject} when the vendor's signed answer
// to this request says verified with a score of at least min_score.
func (v *Verifier) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	var p verifyPayload
	if !isObject(req.Payload) || json.Unmarshal(req.Payload, &p) != nil {
		return sdk.Identity{}, invalidRequest(`the payload must be {"sample": {...}}, with userId or subject optional`)
	}
	if !hasValue(p.Sample) {
		return sdk.Identity{}, invalidRequest("sample is required")
	}
	if p.UserID != "" && !validID(p.UserID) {
		return sdk.Identity{}, invalidRequest("userId must be 1..256 bytes without control characters")
	}
	if p.Subject != "" && !validID(p.Subject) {
		return sdk.Identity{}, invalidRequest("subject must be 1..256 bytes without control characters")
	}
	res, err := v.call(ctx, vendorRequest{Type: typeVerify, UserID: p.UserID, Subject: p.Subject, Payload: p.Sample})
	if err != nil {
		return sdk.Identity{}, err
	}
	if !res.Verified {
		return sdk.Identity{}, refused("biometric sample not verified" + reason(res.Reason))
	}
	if res.Score == nil {
		return sdk.Identity{}, v.protocol(ctx, "the answer has no score")
	}
	if !validID(res.Subject) {
		return sdk.Identity{}, v.protocol(ctx, "the answer has no valid subject")
	}
	if *res.Score < *v.cfg.MinScore {
		return sdk.Identity{}, refused(fmt.Sprintf("biometric score %.2f is below min_score %.2f", *res.Score, *v.cfg.MinScore))
	}
	if p.Subject != "" && res.Subject != p.Subject {
		return sdk.Identity{}, refused("the sample matches another subject than the one claimed")
	}
	if p.UserID != "" {
		enrolled, err := v.kv.Get(ctx, userPrefix+p.UserID)
		switch {
		case err == nil && string(enrolled) != res.Subject:
			return sdk.Identity{}, refused("the sample matches another subject than the user's")
		case err != nil && !errors.Is(err, sdk.ErrNotFound):
			return sdk.Identity{}, fmt.Errorf("biometric: read the user's subject: %v: %w", err, sdk.ErrUnavailable)
		}
	}
	return sdk.Identity{Subject: res.Subject}, nil
}

// Enroll forwards {sample} for the user to the vendor and returns the
// subject the vendor enrolled it under.
func (v *Verifier) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	var p enrollPayload
	dec := json.NewDecoder(bytes.NewReader(req.Payload))
	dec.DisallowUnknownFields()
	if !isObject(req.Payload) || dec.Decode(&p) != nil {
		return sdk.EnrollResult{}, invalidRequest(`the enroll payload is {"sample": {...}}`)
	}
	if !hasValue(p.Sample) {
		return sdk.EnrollResult{}, invalidRequest("sample is required")
	}
	if !validID(req.UserID) {
		return sdk.EnrollResult{}, invalidRequest("the user id must be 1..256 bytes without control characters")
	}
	res, err := v.call(ctx, vendorRequest{Type: typeEnroll, UserID: req.UserID, Payload: p.Sample})
	if err != nil {
		return sdk.EnrollResult{}, err
	}
	if !res.Enrolled {
		return sdk.EnrollResult{}, invalidRequest("the vendor did not enroll the sample" + reason(res.Reason))
	}
	if !validID(res.Subject) {
		return sdk.EnrollResult{}, v.protocol(ctx, "the answer has no valid subject")
	}
	if err := v.kv.Put(ctx, userPrefix+req.UserID, []byte(res.Subject), 0); err != nil {
		return sdk.EnrollResult{}, fmt.Errorf("biometric: keep the user's subject: %v: %w", err, sdk.ErrUnavailable)
	}
	data, _ := json.Marshal(map[string]string{"subject": res.Subject})
	return sdk.EnrollResult{Subject: res.Subject, Data: data}, nil
}

// call signs r, POSTs it to the vendor, and returns the vendor's answer
// once it has checked that the answer is signed, fresh, for this request
// and not seen before.
func (v *Verifier) call(ctx context.Context, r vendorRequest) (vendorResponse, error) {
	var out vendorResponse
	if v.kv == nil {
		return out, &sdk.Error{Code: sdk.CodeUnavailable, Message: "biometric: not configured"}
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("biometric: %w: %w", err, sdk.ErrUnavailable)
	}
	id := make([]byte, requestIDSize)
	if _, err := rand.Read(id); err != nil {
		return out, fmt.Errorf("biometric: %v: %w", err, sdk.ErrInternal)
	}
	r.RequestID = "req_" + hex.EncodeToString(id)
	msgID := "msg_" + hex.EncodeToString(id)
	body, err := json.Marshal(r)
	if err != nil {
		return out, fmt.Errorf("biometric: %v: %w", err, sdk.ErrInternal)
	}
	now := time.Now()
	sig, err := v.signer.Sign(msgID, now, body)
	if err != nil {
		return out, fmt.Errorf("biometric: sign: %v: %w", err, sdk.ErrInternal)
	}

	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout.Duration)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("biometric: %v: %w", err, sdk.ErrInternal)
	}
	for k, vals := range v.headers {
		hreq.Header[k] = vals
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", "handoff-biometric/"+Version)
	}
	hreq.Header.Set(standardwebhooks.HeaderWebhookID, msgID)
	hreq.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	hreq.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)

	log := sdk.Logger(ctx).With("request_type", r.Type)
	resp, err := v.client.Do(hreq)
	if err != nil {
		log.Warn("biometric: vendor unreachable", "err", transportError(err))
		return out, fmt.Errorf("biometric: the vendor is unreachable: %w", sdk.ErrUnavailable)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		log.Warn("biometric: vendor answer unreadable", "err", transportError(err))
		return out, fmt.Errorf("biometric: the vendor's answer is unreadable: %w", sdk.ErrUnavailable)
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		log.Info("biometric: the vendor refused the sample", "status", resp.StatusCode)
		return out, invalidRequest(fmt.Sprintf("the vendor refused the sample (status %d)", resp.StatusCode))
	case resp.StatusCode/100 != 2:
		log.Warn("biometric: the vendor failed", "status", resp.StatusCode)
		return out, fmt.Errorf("biometric: the vendor answered %d: %w", resp.StatusCode, sdk.ErrUnavailable)
	case len(raw) > maxResponse:
		return out, v.untrusted(ctx, "the answer is over 64 KiB")
	}

	// Trust nothing in the answer before its signature is checked.
	if err := v.checker.VerifyIgnoringTimestamp(raw, resp.Header); err != nil {
		return out, v.untrusted(ctx, "bad or missing signature")
	}
	ts, err := strconv.ParseInt(resp.Header.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		return out, v.untrusted(ctx, "bad webhook-timestamp")
	}
	skew := time.Since(time.Unix(ts, 0))
	switch tol := v.cfg.Tolerance.Duration; {
	case skew > tol:
		return out, v.untrusted(ctx, "stale: signed "+skew.Round(time.Second).String()+" ago")
	case -skew > tol:
		return out, v.untrusted(ctx, "signed "+(-skew).Round(time.Second).String()+" in the future")
	}
	if json.Unmarshal(raw, &out) != nil {
		return out, v.untrusted(ctx, "the answer is not the expected JSON")
	}
	if out.RequestID != r.RequestID {
		return out, v.untrusted(ctx, "the answer is for another request")
	}
	// Each signed answer is accepted once. The mark outlives the window
	// in which the answer's timestamp is acceptable.
	sum := sha256.Sum256([]byte(resp.Header.Get(standardwebhooks.HeaderWebhookID)))
	fresh, err := v.kv.CompareAndSwap(ctx, seenPrefix+hex.EncodeToString(sum[:]), nil, []byte(strconv.FormatInt(ts, 10)), 2*v.cfg.Tolerance.Duration)
	if err != nil {
		return out, fmt.Errorf("biometric: remember the answer: %v: %w", err, sdk.ErrUnavailable)
	}
	if !fresh {
		return out, v.untrusted(ctx, "replayed: its webhook-id was seen before")
	}
	return out, nil
}

// untrusted is a vendor answer that fails verification: a forgery, a
// replay, or a vendor (or secret) misconfigured. It is logged as an error
// and answers unavailable.
func (v *Verifier) untrusted(ctx context.Context, why string) error {
	sdk.Logger(ctx).Error("biometric: the vendor's answer failed verification; refused", "reason", why)
	return fmt.Errorf("biometric: the vendor's answer failed verification (%s): %w", why, sdk.ErrUnavailable)
}

// protocol is a signed answer that breaks the protocol.
func (v *Verifier) protocol(ctx context.Context, why string) error {
	sdk.Logger(ctx).Error("biometric: the vendor's answer breaks the protocol", "reason", why)
	return fmt.Errorf("biometric: the vendor's answer breaks the protocol (%s): %w", why, sdk.ErrUnavailable)
}

func isObject(p json.RawMessage) bool {
	return strings.HasPrefix(strings.TrimLeft(string(p), " \t\r\n"), "{")
}

// hasValue reports whether a field was given and is not null.
func hasValue(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

func validID(s string) bool {
	return s != "" && len(s) <= maxIDLen && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// reason is the vendor's reason, reduced to a short printable line.
func reason(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxReasonLen {
		s = strings.ToValidUTF8(s[:maxReasonLen], "")
	}
	if s == "" {
		return ""
	}
	return ": " + s
}

func invalidRequest(msg string) error {
	return &sdk.Error{Code: sdk.CodeInvalidRequest, Message: "biometric: " + msg}
}

func refused(msg string) error {
	return &sdk.Error{Code: sdk.CodeInvalidCredentials, Message: msg}
}

// transportError is err without the URL net/http puts in it: the URL
// may carry a key in its query, and logs never carry secrets.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}
