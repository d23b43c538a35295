// Package hostrpc is the host's half of the plugin channel: the go-plugin
// client plugin, the Verifier client adapter (wire types to sdk types,
// statuses to sdk errors) and the HostKV server. Package providers and the
// test harness in providers/providertest share it.
package hostrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/handoffd/handoff/providers/internal/wire"
	pb "github.com/handoffd/handoff/providers/proto/verifier/v1"
	"github.com/handoffd/handoff/providers/sdk"
)

// Interface guards.
var (
	_ plugin.GRPCPlugin = Plugin{}
	_ pb.HostKVServer   = (*KVServer)(nil)
)

// Plugins is the host's plugin set for go-plugin's ClientConfig.
func Plugins() plugin.PluginSet { return plugin.PluginSet{wire.PluginName: Plugin{}} }

// Plugin is the host side of the go-plugin plugin; Dispense gives a
// *Client.
type Plugin struct{ plugin.NetRPCUnsupportedPlugin }

// GRPCServer belongs to the plugin side (sdk).
func (Plugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("hostrpc: the server side of the verifier plugin lives in providers/sdk")
}

// GRPCClient wraps the connection. done is go-plugin's context, cancelled
// when the plugin process has exited.
func (Plugin) GRPCClient(done context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &Client{c: pb.NewVerifierClient(conn), health: grpc_health_v1.NewHealthClient(conn), broker: broker, done: done}, nil
}

// Client calls a plugin's Verifier service with sdk types. Errors come
// back as *sdk.Error (errors.Is against the sdk sentinels works), or
// wrapping ErrUnsupported when the plugin lacks the RPC.
type Client struct {
	c      pb.VerifierClient
	health grpc_health_v1.HealthClient
	broker *plugin.GRPCBroker
	done   context.Context

	once  sync.Once
	kvID  uint32
	kvSrv *KVServer
}

// Done is closed when the plugin process has exited.
func (c *Client) Done() <-chan struct{} { return c.done.Done() }

// Ping asks the plugin's gRPC health service, within ctx.
func (c *Client) Ping(ctx context.Context) error {
	r, err := c.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return Decode(err)
	}
	if r.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "plugin health: " + r.GetStatus().String()}
	}
	return nil
}

// Describe asks the plugin what it is.
func (c *Client) Describe(ctx context.Context) (sdk.Info, error) {
	r, err := c.c.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return sdk.Info{}, Decode(err)
	}
	return sdk.Info{
		Name: r.GetName(), Version: r.GetVersion(), Flows: r.GetFlows(),
		ProvesIdentity: r.GetProvesIdentity(), Capabilities: r.GetCapabilities(),
	}, nil
}

// Configure hands the plugin its config and serves kv to it over one
// broker connection (opened on the first call; kv of later calls is
// ignored). A nil kv offers no host services.
func (c *Client) Configure(ctx context.Context, cfg json.RawMessage, kv KV, swapMu *sync.Mutex) error {
	if kv != nil {
		c.once.Do(func() {
			c.kvID = c.broker.NextId()
			c.kvSrv = NewKVServer(kv, swapMu)
			go c.broker.AcceptAndServe(c.kvID, func(opts []grpc.ServerOption) *grpc.Server {
				opts = append(opts, grpc.ChainUnaryInterceptor(recoverUnary))
				s := grpc.NewServer(opts...)
				pb.RegisterHostKVServer(s, c.kvSrv)
				return s
			})
		})
	}
	if _, err := c.c.Configure(ctx, &pb.ConfigureRequest{Config: cfg, HostBrokerId: c.kvID}); err != nil {
		return Decode(err)
	}
	return nil
}

// Verify runs the direct flow.
func (c *Client) Verify(ctx context.Context, req sdk.Request) (sdk.Identity, error) {
	r, err := c.c.Verify(ctx, &pb.VerifyRequest{Request: requestToPB(req)})
	if err != nil {
		return sdk.Identity{}, Decode(err)
	}
	return identityFromPB(r.GetIdentity())
}

// Check runs a guard.
func (c *Client) Check(ctx context.Context, req sdk.Request) error {
	if _, err := c.c.Check(ctx, &pb.CheckRequest{Request: requestToPB(req)}); err != nil {
		return Decode(err)
	}
	return nil
}

// Begin starts a redirect flow.
func (c *Client) Begin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResult, error) {
	r, err := c.c.Begin(ctx, &pb.BeginRequest{CallbackUrl: utf8Text(req.CallbackURL), Scopes: utf8Texts(req.Scopes), RequestId: utf8Text(req.RequestID)})
	if err != nil {
		return sdk.BeginResult{}, Decode(err)
	}
	return sdk.BeginResult{AuthURL: r.GetAuthUrl(), State: r.GetState()}, nil
}

// Complete finishes a redirect flow.
func (c *Client) Complete(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	keys := make([]string, 0, len(req.Query))
	for k := range req.Query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	q := make([]*pb.QueryValue, 0, len(keys))
	for _, k := range keys {
		q = append(q, &pb.QueryValue{Key: utf8Text(k), Values: utf8Texts(req.Query[k])})
	}
	r, err := c.c.Complete(ctx, &pb.CompleteRequest{Query: q, State: req.State, CallbackUrl: utf8Text(req.CallbackURL)})
	if err != nil {
		return sdk.Identity{}, Decode(err)
	}
	id, err := identityFromPB(r.GetIdentity())
	if err != nil {
		return id, err
	}
	id.AccessToken, id.RefreshToken = r.GetAccessToken(), r.GetRefreshToken()
	if e := r.GetAccessTokenExpiry(); e > 0 {
		id.AccessTokenExpiry = time.Unix(e, 0).UTC()
	}
	return id, nil
}

// Refresh trades an IdP refresh token for new tokens.
func (c *Client) Refresh(ctx context.Context, req sdk.RefreshRequest) (sdk.RefreshResult, error) {
	r, err := c.c.Refresh(ctx, &pb.RefreshRequest{RefreshToken: utf8Text(req.RefreshToken)})
	if err != nil {
		return sdk.RefreshResult{}, Decode(err)
	}
	res := sdk.RefreshResult{AccessToken: r.GetAccessToken(), RefreshToken: r.GetRefreshToken()}
	if e := r.GetAccessTokenExpiry(); e > 0 {
		res.AccessTokenExpiry = time.Unix(e, 0).UTC()
	}
	return res, nil
}

// Enroll registers a credential.
func (c *Client) Enroll(ctx context.Context, req sdk.EnrollRequest) (sdk.EnrollResult, error) {
	r, err := c.c.Enroll(ctx, &pb.EnrollRequest{UserId: utf8Text(req.UserID), Payload: req.Payload})
	if err != nil {
		return sdk.EnrollResult{}, Decode(err)
	}
	return sdk.EnrollResult{Subject: r.GetSubject(), Data: r.GetData()}, nil
}

func requestToPB(r sdk.Request) *pb.Request {
	return &pb.Request{Payload: r.Payload, ClientIp: utf8Text(r.ClientIP), UserAgent: utf8Text(r.UserAgent), RequestId: utf8Text(r.RequestID)}
}

// utf8Text makes s valid UTF-8, each bad byte sequence becoming U+FFFD.
// A protobuf string must be valid UTF-8, and request facts (a User-Agent,
// a callback's query) come from anyone: sent as they are, one byte 0xff
// fails the call's marshalling, and the sign-in with it.
func utf8Text(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// utf8Texts is utf8Text over a list, copied only when one needs mending.
func utf8Texts(ss []string) []string {
	for i, s := range ss {
		if !utf8.ValidString(s) {
			out := slices.Clone(ss)
			for j := i; j < len(out); j++ {
				out[j] = utf8Text(out[j])
			}
			return out
		}
	}
	return ss
}

func identityFromPB(p *pb.Identity) (sdk.Identity, error) {
	id := sdk.Identity{Subject: p.GetSubject(), Email: p.GetEmail(), EmailVerified: p.GetEmailVerified(), Phone: p.GetPhone(), Name: p.GetName()}
	if len(p.GetClaims()) > 0 {
		if err := json.Unmarshal(p.GetClaims(), &id.Claims); err != nil {
			return sdk.Identity{}, &sdk.Error{Code: sdk.CodeInternal, Message: "plugin sent identity claims that are not a JSON object"}
		}
	}
	return id, nil
}

// DeadlineMessage is the message of the error for a call that ran out of
// time.
const DeadlineMessage = "the plugin did not answer in time"

// Decode turns a failed call's status into the error the host hands on:
// the plugin's own code and message when it sent one; ErrUnavailable for
// transport failures, deadlines and cancellation; ErrUnsupported for an
// RPC the plugin lacks; ErrInternal otherwise.
func Decode(err error) error {
	d := wire.Decode(err)
	if d.Code != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return &sdk.Error{Code: sdk.Code(d.Code), Message: d.Message}
	}
	switch d.GRPC {
	case codes.Unimplemented:
		return fmt.Errorf("%w: %s", wire.ErrUnsupported, d.Message)
	case codes.DeadlineExceeded:
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: DeadlineMessage}
	case codes.Canceled:
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "the call was canceled"}
	case codes.Unavailable:
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: "the plugin is unavailable: " + d.Message}
	}
	return &sdk.Error{Code: sdk.CodeInternal, Message: d.Message}
}

// encode turns a host error (from the daemon's KV) into a status with its
// contract code.
func encode(err error) error {
	msg := err.Error()
	if e, ok := err.(*sdk.Error); ok && e.Message == "" {
		msg = ""
	}
	return wire.Status(pb.ErrorCode(sdk.CodeOf(err)), msg)
}

func recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = wire.Status(pb.ErrorCode_ERROR_CODE_INTERNAL, fmt.Sprintf("host panicked in %s: %v", info.FullMethod, r))
		}
	}()
	return handler(ctx, req)
}
