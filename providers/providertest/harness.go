package providertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/handoffd/handoff/providers/internal/hostrpc"
	"github.com/handoffd/handoff/providers/internal/memkv"
	"github.com/handoffd/handoff/providers/internal/wire"
	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ Conn              = (*Client)(nil)
	_ sdk.KV            = (*KV)(nil)
	_ plugin.GRPCPlugin = pair{}
)

// Conn is what a test does with a verifier: the calls the host makes.
// *Client (through gRPC) and Direct (plain method calls) implement it.
type Conn interface {
	Describe(ctx context.Context) (sdk.Info, error)
	// Configure configures the verifier with cfg, serving KV() as its
	// host KV.
	Configure(ctx context.Context, cfg json.RawMessage) error
	Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error)
	Check(ctx context.Context, req sdk.Request) error
	Begin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResult, error)
	Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error)
	Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error)
	Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error)
	// KV is the memory KV the verifier gets as its host KV.
	KV() *KV
}

// Client is a verifier served in-process over go-plugin's gRPC pair. Its
// errors are what the host would get: *sdk.Error values that match the
// sdk sentinels, or providers.ErrUnsupported.
type Client struct {
	rpc    *hostrpc.Client
	kv     *KV
	swapMu sync.Mutex
}

// Describe asks the verifier what it is; Capabilities are filled.
func (c *Client) Describe(ctx context.Context) (sdk.Info, error) { return c.rpc.Describe(ctx) }

// Configure configures the verifier, serving c.KV() as its host KV.
func (c *Client) Configure(ctx context.Context, cfg json.RawMessage) error {
	return c.rpc.Configure(ctx, cfg, c.kv, &c.swapMu)
}

// Verify runs the direct flow.
func (c *Client) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	return c.rpc.Verify(ctx, req)
}

// Check runs a guard.
func (c *Client) Check(ctx context.Context, req sdk.Request) error { return c.rpc.Check(ctx, req) }

// Begin starts a redirect flow.
func (c *Client) Begin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResult, error) {
	return c.rpc.Begin(ctx, req)
}

// Complete finishes a redirect flow.
func (c *Client) Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	return c.rpc.Complete(ctx, req)
}

// Refresh trades an IdP refresh token for new tokens.
func (c *Client) Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error) {
	return c.rpc.Refresh(ctx, req)
}

// Enroll registers a credential.
func (c *Client) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	return c.rpc.Enroll(ctx, req)
}

// KV is the verifier's host KV.
func (c *Client) KV() *KV { return c.kv }

// Open serves a fresh verifier from f over an in-process go-plugin gRPC
// pair and returns the host's side of it, not yet configured. Everything
// is closed when the test ends.
func Open(t testing.TB, f sdk.Factory) *Client {
	t.Helper()
	server, ok := sdk.Plugins(f)[wire.PluginName].(plugin.GRPCPlugin)
	if !ok {
		t.Fatal("providertest: the sdk serves no gRPC plugin")
	}
	gc, gs := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{wire.PluginName: pair{server: server}})
	t.Cleanup(func() {
		// Close asks the server to stop (go-plugin's Shutdown RPC); stop it
		// ourselves only if that did not work, as Stop is not safe to call
		// twice concurrently.
		_ = gc.Close()
		select {
		case <-gs.DoneCh:
		case <-time.After(2 * time.Second):
			gs.Stop()
		}
	})
	raw, err := gc.Dispense(wire.PluginName)
	if err != nil {
		t.Fatalf("providertest: dispense: %v", err)
	}
	return &Client{rpc: raw.(*hostrpc.Client), kv: NewKV()}
}

// Connect is Open, then Configure with cfg: a json.RawMessage, []byte or
// string is passed as it is, anything else is marshalled to JSON. A
// Configure error fails the test. It returns the client and the
// verifier's host KV, to seed or inspect.
func Connect(t testing.TB, f sdk.Factory, cfg any) (*Client, *KV) {
	t.Helper()
	c := Open(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Configure(ctx, RawConfig(t, cfg)); err != nil {
		t.Fatalf("providertest: Configure: %v", err)
	}
	return c, c.kv
}

// RawConfig turns a config value into the JSON the host would send.
func RawConfig(t testing.TB, cfg any) json.RawMessage {
	t.Helper()
	switch v := cfg.(type) {
	case nil:
		return nil
	case json.RawMessage:
		return v
	case []byte:
		return v
	case string:
		return json.RawMessage(v)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("providertest: config: %v", err)
	}
	return raw
}

// pair joins the plugin's server half (from the sdk) and the host's
// client half (from hostrpc) into the one go-plugin plugin the in-process
// pair wants.
type pair struct {
	plugin.NetRPCUnsupportedPlugin
	server plugin.GRPCPlugin
}

func (p pair) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	return p.server.GRPCServer(b, s)
}

func (p pair) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return hostrpc.Plugin{}.GRPCClient(ctx, b, c)
}

// KV is an in-memory host KV with TTLs. It implements sdk.KV too, so a
// verifier run directly can use it.
type KV struct{ m *memkv.KV }

// NewKV returns an empty KV.
func NewKV() *KV { return &KV{m: memkv.New()} }

// Get returns the value under key, or an error matching sdk.ErrNotFound.
func (k *KV) Get(ctx context.Context, key string) ([]byte, error) { return k.m.Get(ctx, key) }

// Put stores value under key; ttl > 0 expires it.
func (k *KV) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return k.m.Put(ctx, key, value, ttl)
}

// Delete removes key.
func (k *KV) Delete(ctx context.Context, key string) error { return k.m.Delete(ctx, key) }

// List returns up to limit entries under prefix after after, in key order.
func (k *KV) List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error) {
	return k.m.List(ctx, prefix, after, limit)
}

// Update changes a value in one step (the host's transactional update).
func (k *KV) Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	return k.m.Update(ctx, key, ttl, change)
}

// Add implements sdk.KV.
func (k *KV) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	return k.m.Add(ctx, key, delta, ttl)
}

// CompareAndSwap implements sdk.KV.
func (k *KV) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	return k.m.CompareAndSwap(ctx, key, old, new, ttl)
}

// Keys lists every live key, for assertions.
func (k *KV) Keys() []string {
	es, _ := k.m.List(context.Background(), "", "", 1<<30)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

// direct calls a Verifier's methods in-process, as a plugin author's unit
// test would: no gRPC, so it shows what the verifier itself returns.
type direct struct {
	v  sdk.Verifier
	kv *KV
}

// Direct returns a Conn that calls a fresh verifier from f directly. A
// panic comes back as an error (which the suite reports) instead of
// killing the test binary.
func Direct(f sdk.Factory) Conn { return &direct{v: f(), kv: NewKV()} }

type host struct{ kv sdk.KV }

func (h host) KV() sdk.KV { return h.kv }

// PanicError is a panic caught in a direct call.
type PanicError struct {
	Method string
	Value  any
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.Method, e.Value) }

func catch(method string, err *error) {
	if r := recover(); r != nil {
		*err = &PanicError{Method: method, Value: r}
	}
}

func (d *direct) KV() *KV { return d.kv }

func (d *direct) Describe(ctx context.Context) (info sdk.Info, err error) {
	defer catch("Describe", &err)
	info, err = d.v.Describe(ctx)
	caps := []string{}
	if _, ok := d.v.(sdk.Redirector); ok {
		caps = append(caps, sdk.CapRedirector)
	}
	if _, ok := d.v.(sdk.Enroller); ok {
		caps = append(caps, sdk.CapEnroller)
	}
	if _, ok := d.v.(sdk.Guard); ok {
		caps = append(caps, sdk.CapGuard)
	}
	info.Capabilities = caps
	return info, err
}

func (d *direct) Configure(ctx context.Context, cfg json.RawMessage) (err error) {
	defer catch("Configure", &err)
	return d.v.Configure(ctx, cfg, host{kv: d.kv})
}

func (d *direct) Verify(ctx context.Context, req sdk.Request) (id sdk.Identity, err error) {
	defer catch("Verify", &err)
	return d.v.Verify(ctx, req)
}

func (d *direct) Check(ctx context.Context, req sdk.Request) (err error) {
	defer catch("Check", &err)
	g, ok := d.v.(sdk.Guard)
	if !ok {
		return wire.ErrUnsupported
	}
	return g.Check(ctx, req)
}

func (d *direct) Begin(ctx context.Context, req sdk.BeginRequest) (res sdk.BeginResult, err error) {
	defer catch("Begin", &err)
	r, ok := d.v.(sdk.Redirector)
	if !ok {
		return res, wire.ErrUnsupported
	}
	return r.Begin(ctx, req)
}

func (d *direct) Complete(ctx context.Context, req sdk.CompleteRequest) (id sdk.Identity, err error) {
	defer catch("Complete", &err)
	r, ok := d.v.(sdk.Redirector)
	if !ok {
		return id, wire.ErrUnsupported
	}
	return r.Complete(ctx, req)
}

func (d *direct) Refresh(ctx context.Context, req sdk.RefreshRequest) (res sdk.RefreshResult, err error) {
	defer catch("Refresh", &err)
	r, ok := d.v.(sdk.Refresher)
	if !ok {
		return res, wire.ErrUnsupported
	}
	return r.Refresh(ctx, req)
}

func (d *direct) Enroll(ctx context.Context, req sdk.EnrollRequest) (res sdk.EnrollResult, err error) {
	defer catch("Enroll", &err)
	e, ok := d.v.(sdk.Enroller)
	if !ok {
		return res, wire.ErrUnsupported
	}
	return e.Enroll(ctx, req)
}
