// Package testverifier is a verifier whose behaviour the payload picks
// (ok, error codes, panic, hang, crash, host KV calls...), for the host's
// and the SDK's tests. It is served by the test plugins in
// providers/internal/testplugins and, as a built-in, by re-executed test
// binaries.
package testverifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ sdk.Verifier   = (*Echo)(nil)
	_ sdk.Redirector = (*Echo)(nil)
	_ sdk.Enroller   = (*Echo)(nil)
	_ sdk.Guard      = (*Echo)(nil)
	_ sdk.Verifier   = (*Minimal)(nil)
)

// Config is the echo verifier's config.
type Config struct {
	// Greeting is returned in the identity's Name.
	Greeting string `json:"greeting"`
	// FailConfigure makes Configure fail with ErrUnavailable.
	FailConfigure bool `json:"fail_configure"`
	// FailConfigureIfExists makes Configure fail while this file exists,
	// so a test can make a plugin's restarts fail and then recover.
	FailConfigureIfExists string `json:"fail_configure_if_exists"`
	// Nested checks that unknown nested keys are reported with a path.
	Nested struct {
		Depth int `json:"depth"`
	} `json:"nested"`
}

// Echo does what its payload asks.
type Echo struct {
	cfg Config
	kv  sdk.KV
}

// New returns an Echo.
func New() sdk.Verifier { return &Echo{} }

// NewMinimal returns a verifier without optional capabilities.
func NewMinimal() sdk.Verifier { return &Minimal{} }

// EnvNoIdentity, set to 1 in the plugin's environment, makes Echo report
// that it does not prove identity, as a captcha does.
const EnvNoIdentity = "ECHO_NO_IDENTITY"

func (e *Echo) Describe(context.Context) (sdk.Info, error) {
	proves := os.Getenv(EnvNoIdentity) != "1"
	return sdk.Info{Name: "echo", Version: "1.0.0", Flows: []string{sdk.FlowDirect, sdk.FlowRedirect}, ProvesIdentity: proves}, nil
}

func (e *Echo) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
	cfg := Config{Greeting: "hello"}
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	if cfg.FailConfigure {
		return fmt.Errorf("configure asked to fail: %w", sdk.ErrUnavailable)
	}
	if f := cfg.FailConfigureIfExists; f != "" {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("configure asked to fail while %s exists: %w", f, sdk.ErrUnavailable)
		}
	}
	e.cfg, e.kv = cfg, host.KV()
	return nil
}

// Payload is what Verify reads.
type Payload struct {
	Op      string `json:"op"`
	Subject string `json:"subject"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Key     string `json:"key"`
	Value   string `json:"value"`
	Millis  int    `json:"ms"`
}

var codes = map[string]error{
	"invalid_credentials": sdk.ErrInvalidCredentials,
	"invalid_request":     sdk.ErrInvalidRequest,
	"unavailable":         sdk.ErrUnavailable,
	"internal":            sdk.ErrInternal,
	"not_found":           sdk.ErrNotFound,
	"misconfigured":       sdk.ErrMisconfigured,
}

func (e *Echo) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	var p Payload
	if err := json.Unmarshal(req.Payload, &p); err != nil {
		return sdk.Identity{}, fmt.Errorf("payload: %v: %w", err, sdk.ErrInvalidRequest)
	}
	if p.Op == "" && p.Subject == "" {
		return sdk.Identity{}, fmt.Errorf("want an op or a subject: %w", sdk.ErrInvalidRequest)
	}
	id := sdk.Identity{Subject: p.Subject, Name: e.cfg.Greeting, Claims: map[string]any{"pid": os.Getpid(), "request_id": req.RequestID, "client_ip": req.ClientIP, "user_agent": req.UserAgent}}
	if id.Subject == "" {
		id.Subject = "echo"
	}
	switch p.Op {
	case "", "ok":
		return id, nil
	case "error":
		sentinel, ok := codes[p.Code]
		if !ok {
			return id, errors.New(p.Message) // a plain error: internal
		}
		if p.Message == "" {
			return id, sentinel
		}
		return id, fmt.Errorf("%s: %w", p.Message, sentinel)
	case "panic":
		panic("test panic in Verify")
	case "hang":
		select {} // ignores ctx on purpose: the host must not wait
	case "sleep":
		select {
		case <-time.After(time.Duration(p.Millis) * time.Millisecond):
			return id, nil
		case <-ctx.Done():
			return id, ctx.Err()
		}
	case "deadline":
		if d, ok := ctx.Deadline(); ok {
			id.Claims["deadline_ms"] = time.Until(d).Milliseconds()
		}
		return id, nil
	case "crash":
		os.Exit(3)
	case "kvput":
		return id, e.kv.Put(ctx, p.Key, []byte(p.Value), time.Duration(p.Millis)*time.Millisecond)
	case "kvget":
		v, err := e.kv.Get(ctx, p.Key)
		if err != nil {
			return id, fmt.Errorf("kv get %q: %w", p.Key, err)
		}
		id.Subject = string(v)
		return id, nil
	case "kvonce":
		ok, err := e.kv.CompareAndSwap(ctx, p.Key, nil, []byte(p.Value), 0)
		if err != nil {
			return id, err
		}
		if !ok {
			return id, fmt.Errorf("already used: %w", sdk.ErrInvalidCredentials)
		}
		return id, nil
	case "kvadd":
		delta, err := strconv.ParseInt(p.Value, 10, 64)
		if err != nil {
			return id, fmt.Errorf("kvadd: value %q: %w", p.Value, sdk.ErrInvalidRequest)
		}
		n, err := e.kv.Add(ctx, p.Key, delta, time.Duration(p.Millis)*time.Millisecond)
		if err != nil {
			return id, fmt.Errorf("kv add %q: %w", p.Key, err)
		}
		id.Claims["n"] = n
		return id, nil
	case "kvlist":
		es, err := e.kv.List(ctx, p.Key, "", 0)
		if err != nil {
			return id, err
		}
		keys := []string{}
		for _, e := range es {
			keys = append(keys, e.Key)
		}
		id.Claims["keys"] = keys
		return id, nil
	case "stdout":
		fmt.Println("stray stdout line from Verify")
		return id, nil
	case "log":
		sdk.Logger(ctx).Info("log from Verify", "subject", id.Subject)
		return id, nil
	}
	return id, fmt.Errorf("unknown op %q: %w", p.Op, sdk.ErrInvalidRequest)
}

func (e *Echo) Check(ctx context.Context, req sdk.Request) error {
	var p struct {
		Pass bool `json:"pass"`
	}
	if err := json.Unmarshal(req.Payload, &p); err != nil {
		return fmt.Errorf("payload: %w", sdk.ErrInvalidRequest)
	}
	if !p.Pass {
		return fmt.Errorf("captcha failed: %w", sdk.ErrInvalidCredentials)
	}
	return nil
}

func (e *Echo) Begin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResult, error) {
	u := "https://idp.example/authorize?" + url.Values{"state": {"st-" + req.RequestID}, "redirect_uri": {req.CallbackURL}}.Encode()
	return sdk.BeginResult{AuthURL: u, State: []byte("state-for-" + req.RequestID)}, nil
}

func (e *Echo) Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	switch req.Query.Get("code") {
	case "":
		return sdk.Identity{}, fmt.Errorf("no code in callback: %w", sdk.ErrInvalidRequest)
	case "misconfigured": // as the oidc plugin answers an IdP's invalid_client
		return sdk.Identity{}, fmt.Errorf("the identity provider refused the client credentials (invalid_client) for client_id %q: %w: check client_id and client_secret", "echo-client", sdk.ErrMisconfigured)
	}
	// idp_token stands for the IdP's tokens of the code exchange.
	id := sdk.Identity{Subject: req.Query.Get("code"), Claims: map[string]any{"state": string(req.State)}}
	if at := req.Query.Get("idp_token"); at != "" {
		id.AccessToken, id.RefreshToken, id.AccessTokenExpiry = at, "refresh-"+at, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	return id, nil
}

// Refresh answers "refreshed-" and the refresh token's tail; a refresh
// token not of its making is invalid credentials.
func (e *Echo) Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error) {
	at, ok := strings.CutPrefix(req.RefreshToken, "refresh-")
	if !ok {
		return sdk.RefreshResult{}, fmt.Errorf("unknown refresh token: %w", sdk.ErrInvalidCredentials)
	}
	return sdk.RefreshResult{AccessToken: "refreshed-" + at, AccessTokenExpiry: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)}, nil
}

func (e *Echo) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	if req.UserID == "" {
		return sdk.EnrollResult{}, fmt.Errorf("no user: %w", sdk.ErrInvalidRequest)
	}
	var obj map[string]any
	if err := json.Unmarshal(req.Payload, &obj); err != nil || obj == nil {
		return sdk.EnrollResult{}, fmt.Errorf("payload is not a JSON object: %w", sdk.ErrInvalidRequest)
	}
	if err := e.kv.Put(ctx, "enrolled/"+req.UserID, req.Payload, 0); err != nil {
		return sdk.EnrollResult{}, err
	}
	return sdk.EnrollResult{Subject: req.UserID, Data: json.RawMessage(`{"enrolled":true}`)}, nil
}

// Minimal only verifies: {"user": "x"} proves subject x.
type Minimal struct{}

func (Minimal) Describe(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "minimal", Version: "0.1.0", Flows: []string{sdk.FlowDirect}}, nil
}

func (Minimal) Configure(_ context.Context, raw json.RawMessage, _ sdk.Host) error {
	var cfg struct{}
	return sdk.DecodeConfig(raw, &cfg)
}

func (Minimal) Verify(_ context.Context, req sdk.Request) (sdk.Identity, error) {
	var p struct {
		User string `json:"user"`
	}
	if err := json.Unmarshal(req.Payload, &p); err != nil || p.User == "" {
		return sdk.Identity{}, fmt.Errorf("want {\"user\": ...}: %w", sdk.ErrInvalidRequest)
	}
	return sdk.Identity{Subject: p.User}, nil
}
