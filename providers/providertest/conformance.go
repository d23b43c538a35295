package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffd/handoff/providers/internal/wire"
	"github.com/handoffd/handoff/providers/sdk"
)

// Suite describes a verifier for Run.
type Suite struct {
	// New makes the verifier under test.
	New sdk.Factory
	// Config is a valid config section: a map or struct (marshalled to
	// JSON), or JSON as json.RawMessage, []byte or string. nil is no config.
	Config any
	// Valid, when set, prepares a request Verify must accept on a
	// configured c (it may Enroll through c or seed c.KV()) and returns
	// its payload. It runs once per connection.
	Valid func(t *testing.T, c Conn) json.RawMessage
}

// unknownKey is the key Run adds to the config to see it refused.
const unknownKey = "providertest_unknown_key"

// Run runs the conformance suite twice: on the verifier called directly
// (what the code itself returns) and through the in-process go-plugin gRPC
// pair (what the host gets). It checks that:
//
//   - Describe is sane: a name, a version, known flows, and the Redirector
//     interface behind the redirect flow;
//   - Configure accepts Config and refuses an unknown key with an error
//     matching sdk.ErrInvalidRequest that names the key;
//   - Verify with an empty, garbage or non-object payload returns
//     sdk.ErrInvalidRequest, and `{}` an error (never an identity, never a
//     panic), from many goroutines at once;
//   - every error carries a contract code (not a bare error, which becomes
//     ErrInternal);
//   - a call whose context has run out returns at once;
//   - the optional capabilities refuse garbage with ErrInvalidRequest, and
//     missing ones are unsupported;
//   - with Suite.Valid, Verify accepts the valid request and returns a
//     subject.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if s.New == nil {
		t.Fatal("providertest: Suite.New is nil")
	}
	t.Run("direct", func(t *testing.T) { run(t, s, func(t *testing.T) Conn { return Direct(s.New) }) })
	t.Run("grpc", func(t *testing.T) { run(t, s, func(t *testing.T) Conn { return Open(t, s.New) }) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noPanic fails the test when err is a caught panic.
func noPanic(t *testing.T, what string, err error) {
	t.Helper()
	var pe *PanicError
	if errors.As(err, &pe) {
		t.Fatalf("%s: %v", what, pe)
	}
	if err != nil && strings.Contains(err.Error(), "plugin panicked") {
		t.Fatalf("%s: %v", what, err)
	}
}

// coded fails the test unless err carries one of the contract codes.
func coded(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	noPanic(t, what, err)
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("%s: error %q (code %v) matches none of %v", what, err, sdk.CodeOf(err), want)
}

func run(t *testing.T, s Suite, connect func(*testing.T) Conn) {
	cfg := RawConfig(t, s.Config)
	configured := func(t *testing.T) Conn {
		c := connect(t)
		err := c.Configure(ctxT(t), cfg)
		noPanic(t, "Configure", err)
		if err != nil {
			t.Fatalf("Configure(%s): %v", cfg, err)
		}
		return c
	}

	t.Run("Describe", func(t *testing.T) {
		c := connect(t)
		info, err := c.Describe(ctxT(t))
		noPanic(t, "Describe", err)
		if err != nil {
			t.Fatalf("Describe before Configure: %v", err)
		}
		if info.Name == "" || strings.ContainsAny(info.Name, " \t\n") {
			t.Errorf("Name %q: want one word", info.Name)
		}
		if info.Version == "" {
			t.Error("Version is empty")
		}
		if len(info.Flows) == 0 {
			t.Error("no Flows")
		}
		for _, f := range info.Flows {
			if f != sdk.FlowDirect && f != sdk.FlowRedirect {
				t.Errorf("unknown flow %q", f)
			}
		}
		if slices.Contains(info.Flows, sdk.FlowRedirect) && !slices.Contains(info.Capabilities, sdk.CapRedirector) {
			t.Error("the redirect flow needs sdk.Redirector")
		}
	})

	t.Run("ConfigureRejectsUnknownKeys", func(t *testing.T) {
		c := connect(t)
		obj := map[string]any{}
		if len(cfg) > 0 && string(cfg) != "null" {
			if err := json.Unmarshal(cfg, &obj); err != nil {
				t.Fatalf("Suite.Config is not a JSON object: %v", err)
			}
		}
		obj[unknownKey] = true
		raw, _ := json.Marshal(obj)
		err := c.Configure(ctxT(t), raw)
		coded(t, "Configure with an unknown key", err, sdk.ErrInvalidRequest)
		if !strings.Contains(err.Error(), unknownKey) {
			t.Errorf("the error %q does not name the key %q", err, unknownKey)
		}
		noPanic(t, "Configure", c.Configure(ctxT(t), json.RawMessage(`[1,2]`)))
	})

	t.Run("VerifyRejectsGarbage", func(t *testing.T) {
		c := configured(t)
		for name, p := range map[string]string{
			"empty": "", "garbage": "garbage\x00\xff", "array": "[1]", "string": `"x"`,
			"truncated": `{"a":`, "null": "null",
		} {
			_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(p), RequestID: "conformance"})
			coded(t, "Verify("+name+")", err, sdk.ErrInvalidRequest)
		}
		_, err := c.Verify(ctxT(t), sdk.Request{Payload: json.RawMessage(`{}`)})
		coded(t, "Verify({})", err, sdk.ErrInvalidRequest, sdk.ErrInvalidCredentials)
	})

	t.Run("Concurrent", func(t *testing.T) {
		c := configured(t)
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := `{"n":` + string(rune('0'+i%10)) + `}`
				if i%2 == 0 {
					p = "garbage"
				}
				_, err := c.Verify(context.Background(), sdk.Request{Payload: json.RawMessage(p)})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			coded(t, "concurrent Verify", err, sdk.ErrInvalidRequest, sdk.ErrInvalidCredentials)
		}
	})

	t.Run("DeadlineRespected", func(t *testing.T) {
		c := configured(t)
		var payload json.RawMessage = json.RawMessage(`{}`)
		if s.Valid != nil {
			payload = s.Valid(t, c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		time.Sleep(2 * time.Millisecond)
		start := time.Now()
		_, err := c.Verify(ctx, sdk.Request{Payload: payload})
		noPanic(t, "Verify with an expired context", err)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Verify with an expired context took %s", took)
		}
		if err != nil && sdk.CodeOf(err) == sdk.CodeInternal {
			t.Fatalf("Verify with an expired context: %v (want ErrUnavailable or the verifier's own code)", err)
		}
	})

	t.Run("Capabilities", func(t *testing.T) {
		c := configured(t)
		info, err := c.Describe(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		has := func(cap string) bool { return slices.Contains(info.Capabilities, cap) }
		garbage := json.RawMessage("garbage")

		err = c.Check(ctxT(t), sdk.Request{Payload: garbage})
		if has(sdk.CapGuard) {
			coded(t, "Check(garbage)", err, sdk.ErrInvalidRequest)
		} else if !errors.Is(err, wire.ErrUnsupported) {
			t.Errorf("Check on a non-guard: %v, want unsupported", err)
		}
		_, err = c.Enroll(ctxT(t), sdk.EnrollRequest{UserID: "conformance-user", Payload: garbage})
		if has(sdk.CapEnroller) {
			coded(t, "Enroll(garbage)", err, sdk.ErrInvalidRequest)
		} else if !errors.Is(err, wire.ErrUnsupported) {
			t.Errorf("Enroll on a non-enroller: %v, want unsupported", err)
		}
		_, err = c.Complete(ctxT(t), sdk.CompleteRequest{Query: url.Values{}})
		if has(sdk.CapRedirector) {
			coded(t, "Complete(no query, no state)", err, sdk.ErrInvalidRequest, sdk.ErrInvalidCredentials)
		} else if !errors.Is(err, wire.ErrUnsupported) {
			t.Errorf("Complete on a non-redirector: %v, want unsupported", err)
		}
		if !has(sdk.CapRedirector) {
			if _, err := c.Begin(ctxT(t), sdk.BeginRequest{}); !errors.Is(err, wire.ErrUnsupported) {
				t.Errorf("Begin on a non-redirector: %v, want unsupported", err)
			}
		}
	})

	if s.Valid != nil {
		t.Run("VerifyAcceptsValid", func(t *testing.T) {
			c := configured(t)
			payload := s.Valid(t, c)
			id, err := c.Verify(ctxT(t), sdk.Request{Payload: payload, RequestID: "conformance"})
			noPanic(t, "Verify(valid)", err)
			if err != nil {
				t.Fatalf("Verify(valid): %v", err)
			}
			if id.Subject == "" {
				t.Fatal("Verify(valid) returned no subject")
			}
		})
	}
}
