// Package sdk is the contract between handoff and its verifier plugins,
// and everything a plugin author needs: the Verifier interface and its
// optional capabilities, the request and identity types, the error codes,
// the host's services (a KV namespaced to the provider), a strict config
// decoder, a logger, and Serve, which turns a Verifier into a plugin
// process.
//
// # A plugin
//
//	type greeter struct{ kv sdk.KV }
//
//	func New() sdk.Verifier { return &greeter{} }
//
//	func (g *greeter) Describe(context.Context) (sdk.Info, error) {
//		return sdk.Info{Name: "greeter", Version: "1.0.0", Flows: []string{sdk.FlowDirect}, ProvesIdentity: true}, nil
//	}
//
//	func (g *greeter) Configure(ctx context.Context, raw json.RawMessage, host sdk.Host) error {
//		var cfg struct{}
//		g.kv = host.KV()
//		return sdk.DecodeConfig(raw, &cfg) // unknown keys are errors naming the key
//	}
//
//	func (g *greeter) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
//		var p struct{ User, Password string }
//		if err := json.Unmarshal(req.Payload, &p); err != nil {
//			return sdk.Identity{}, fmt.Errorf("payload: %w", sdk.ErrInvalidRequest)
//		}
//		want, err := g.kv.Get(ctx, "users/"+p.User)
//		if errors.Is(err, sdk.ErrNotFound) || subtle.ConstantTimeCompare(want, []byte(p.Password)) != 1 {
//			return sdk.Identity{}, sdk.ErrInvalidCredentials
//		}
//		return sdk.Identity{Subject: p.User}, err
//	}
//
//	func main() { sdk.Serve(New) }
//
// examples/plugin in the repository is a complete one (TOTP) with its
// tests and README; providers/providertest is the test harness and the
// conformance suite.
//
// # Built-in and third-party plugins
//
// Both run out of process and take the same path. A third-party plugin's
// main calls Serve(factory). handoff's built-ins are factories in an
// explicit map in handoff's main.go; the daemon re-executes its own binary
// as `handoff plugin <kind>`, whose main calls Serve(builtins[kind]).
//
// # Errors
//
// go-plugin alone turns errors into strings. Here a plugin returns the
// sentinels (ErrInvalidCredentials, ErrInvalidRequest, ErrUnavailable,
// ErrMisconfigured, ErrInternal; ErrNotFound from the KV), bare or wrapped
// with a message; each crosses the boundary as a code in the gRPC status,
// and the host gets an *Error that matches the same sentinel with
// errors.Is and keeps the message. Any other error arrives as
// ErrInternal, and so does a panic, which Serve recovers: the plugin keeps
// serving.
//
// # Standard output
//
// Never write to standard output in a plugin. go-plugin's handshake is the
// first line the plugin prints on stdout; anything printed before Serve
// takes its place and the host refuses the plugin. After the handshake
// stdout is captured and only logged by the host as a warning. Log with
// Logger, which writes hclog JSON lines to standard error; the host parses
// them and re-logs each under the provider's name with its level and
// attributes.
//
// # Lifetime
//
// Serve exits when the host stops the plugin, and on its own when the host
// process is gone (the parent pid changes): a plugin never outlives the
// daemon, even one killed with SIGKILL.
package sdk
