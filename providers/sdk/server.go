package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/handoffd/handoff/providers/internal/wire"
	pb "github.com/handoffd/handoff/providers/proto/verifier/v1"
)

// Interface guards.
var (
	_ plugin.GRPCPlugin = (*grpcPlugin)(nil)
	_ pb.VerifierServer = (*server)(nil)
	_ KV                = (*kvClient)(nil)
	_ Host              = hostServices{}
)

// Plugins returns the go-plugin plugin set Serve serves for f. Plugin
// authors do not need it: package providers and the in-process test
// harness (providers/providertest) use it.
func Plugins(f Factory) plugin.PluginSet {
	return plugin.PluginSet{wire.PluginName: &grpcPlugin{factory: f}}
}

// grpcPlugin is the plugin side of the go-plugin plugin.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	factory Factory
}

// GRPCServer registers a fresh verifier from the factory.
func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterVerifierServer(s, &server{v: p.factory(), broker: broker})
	return nil
}

// GRPCClient is the host's half, which lives in package providers.
func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: the client side of the verifier plugin lives in package providers")
}

// server adapts a Verifier to the generated gRPC service. Each method
// recovers panics into ErrInternal, so a bug in one call is one failed call
// and the plugin keeps serving.
type server struct {
	pb.UnimplementedVerifierServer
	v      Verifier
	broker *plugin.GRPCBroker

	mu     sync.Mutex
	kvID   uint32
	kvConn *grpc.ClientConn
}

func (s *server) recover(ctx context.Context, method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	Logger(ctx).Error("plugin panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = wire.Status(pb.ErrorCode_ERROR_CODE_INTERNAL, fmt.Sprintf("plugin panicked in %s: %v", method, r))
}

func (s *server) Describe(ctx context.Context, _ *pb.DescribeRequest) (resp *pb.DescribeResponse, err error) {
	defer s.recover(ctx, "Describe", &err)
	info, err := s.v.Describe(ctx)
	if err != nil {
		return nil, encode(err)
	}
	return &pb.DescribeResponse{
		Name: info.Name, Version: info.Version, Flows: info.Flows,
		ProvesIdentity: info.ProvesIdentity, Capabilities: capabilities(s.v),
	}, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (resp *pb.ConfigureResponse, err error) {
	defer s.recover(ctx, "Configure", &err)
	var host Host = hostServices{kv: noKV{}}
	if id := req.GetHostBrokerId(); id != 0 {
		conn, err := s.hostConn(id)
		if err != nil {
			return nil, wire.Status(pb.ErrorCode_ERROR_CODE_UNAVAILABLE, "dial host services: "+err.Error())
		}
		host = hostServices{kv: &kvClient{c: pb.NewHostKVClient(conn)}}
	}
	if err := s.v.Configure(ctx, req.GetConfig(), host); err != nil {
		return nil, encode(err)
	}
	return &pb.ConfigureResponse{}, nil
}

// hostConn opens the one connection to the host services, or keeps the one
// open for the same broker id.
func (s *server) hostConn(id uint32) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kvConn != nil && s.kvID == id {
		return s.kvConn, nil
	}
	if s.kvConn != nil {
		_ = s.kvConn.Close()
		s.kvConn = nil
	}
	conn, err := s.broker.Dial(id)
	if err != nil {
		return nil, err
	}
	s.kvID, s.kvConn = id, conn
	return conn, nil
}

func (s *server) Verify(ctx context.Context, req *pb.VerifyRequest) (resp *pb.VerifyResponse, err error) {
	r := requestFromPB(req.GetRequest())
	ctx = withRequestID(ctx, r.RequestID)
	defer s.recover(ctx, "Verify", &err)
	id, err := s.v.Verify(ctx, r)
	if err != nil {
		return nil, encode(err)
	}
	pid, err := identityToPB(id)
	if err != nil {
		return nil, err
	}
	return &pb.VerifyResponse{Identity: pid}, nil
}

func (s *server) Check(ctx context.Context, req *pb.CheckRequest) (resp *pb.CheckResponse, err error) {
	r := requestFromPB(req.GetRequest())
	ctx = withRequestID(ctx, r.RequestID)
	defer s.recover(ctx, "Check", &err)
	g, ok := s.v.(Guard)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin is not a Guard")
	}
	if err := g.Check(ctx, r); err != nil {
		return nil, encode(err)
	}
	return &pb.CheckResponse{}, nil
}

func (s *server) Begin(ctx context.Context, req *pb.BeginRequest) (resp *pb.BeginResponse, err error) {
	ctx = withRequestID(ctx, req.GetRequestId())
	defer s.recover(ctx, "Begin", &err)
	rd, ok := s.v.(Redirector)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin is not a Redirector")
	}
	res, err := rd.Begin(ctx, BeginRequest{CallbackURL: req.GetCallbackUrl(), Scopes: req.GetScopes(), RequestID: req.GetRequestId()})
	if err != nil {
		return nil, encode(err)
	}
	return &pb.BeginResponse{AuthUrl: res.AuthURL, State: res.State}, nil
}

func (s *server) Complete(ctx context.Context, req *pb.CompleteRequest) (resp *pb.CompleteResponse, err error) {
	defer s.recover(ctx, "Complete", &err)
	rd, ok := s.v.(Redirector)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin is not a Redirector")
	}
	q := url.Values{}
	for _, kv := range req.GetQuery() {
		q[kv.GetKey()] = append(q[kv.GetKey()], kv.GetValues()...)
	}
	id, err := rd.Complete(ctx, CompleteRequest{Query: q, State: req.GetState(), CallbackURL: req.GetCallbackUrl()})
	if err != nil {
		return nil, encode(err)
	}
	pid, err := identityToPB(id)
	if err != nil {
		return nil, err
	}
	out := &pb.CompleteResponse{Identity: pid, AccessToken: id.AccessToken, RefreshToken: id.RefreshToken}
	if !id.AccessTokenExpiry.IsZero() {
		out.AccessTokenExpiry = id.AccessTokenExpiry.Unix()
	}
	return out, nil
}

func (s *server) Refresh(ctx context.Context, req *pb.RefreshRequest) (resp *pb.RefreshResponse, err error) {
	defer s.recover(ctx, "Refresh", &err)
	rf, ok := s.v.(Refresher)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin is not a Refresher")
	}
	res, err := rf.Refresh(ctx, RefreshRequest{RefreshToken: req.GetRefreshToken()})
	if err != nil {
		return nil, encode(err)
	}
	out := &pb.RefreshResponse{AccessToken: res.AccessToken, RefreshToken: res.RefreshToken}
	if !res.AccessTokenExpiry.IsZero() {
		out.AccessTokenExpiry = res.AccessTokenExpiry.Unix()
	}
	return out, nil
}

func (s *server) Enroll(ctx context.Context, req *pb.EnrollRequest) (resp *pb.EnrollResponse, err error) {
	defer s.recover(ctx, "Enroll", &err)
	en, ok := s.v.(Enroller)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "the plugin is not an Enroller")
	}
	res, err := en.Enroll(ctx, EnrollRequest{UserID: req.GetUserId(), Payload: req.GetPayload()})
	if err != nil {
		return nil, encode(err)
	}
	if len(res.Data) > 0 && !json.Valid(res.Data) {
		return nil, wire.Status(pb.ErrorCode_ERROR_CODE_INTERNAL, "Enroll returned Data that is not JSON")
	}
	return &pb.EnrollResponse{Subject: res.Subject, Data: res.Data}, nil
}

func requestFromPB(r *pb.Request) Request {
	return Request{Payload: r.GetPayload(), ClientIP: r.GetClientIp(), UserAgent: r.GetUserAgent(), RequestID: r.GetRequestId()}
}

func identityToPB(id Identity) (*pb.Identity, error) {
	out := &pb.Identity{Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified, Phone: id.Phone, Name: id.Name}
	if len(id.Claims) > 0 {
		raw, err := json.Marshal(id.Claims)
		if err != nil {
			return nil, wire.Status(pb.ErrorCode_ERROR_CODE_INTERNAL, "identity claims are not JSON: "+err.Error())
		}
		out.Claims = raw
	}
	return out, nil
}

// encode turns a plugin's error into a status carrying its contract code.
// A bare sentinel travels without a message.
func encode(err error) error {
	code := CodeOf(err)
	msg := err.Error()
	if e, ok := err.(*Error); ok && e.Message == "" {
		msg = ""
	}
	return wire.Status(pb.ErrorCode(code), msg)
}

// decode turns a failed host call's status back into an *Error.
func decode(err error) error {
	d := wire.Decode(err)
	if d.Code != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return &Error{Code: Code(d.Code), Message: d.Message}
	}
	switch d.GRPC {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return &Error{Code: CodeUnavailable, Message: "host services: " + d.Message}
	}
	return &Error{Code: CodeInternal, Message: "host services: " + d.Message}
}

// hostServices is the Host a plugin gets in Configure.
type hostServices struct{ kv KV }

func (h hostServices) KV() KV { return h.kv }

// kvClient is KV over the broker connection to the host.
type kvClient struct{ c pb.HostKVClient }

func ttlMillis(ttl time.Duration) int64 {
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	return ms
}

func (k *kvClient) Get(ctx context.Context, key string) ([]byte, error) {
	r, err := k.c.Get(ctx, &pb.KVGetRequest{Key: key})
	if err != nil {
		return nil, decode(err)
	}
	return append([]byte{}, r.GetValue()...), nil
}

func (k *kvClient) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if _, err := k.c.Put(ctx, &pb.KVPutRequest{Key: key, Value: value, TtlMs: ttlMillis(ttl)}); err != nil {
		return decode(err)
	}
	return nil
}

func (k *kvClient) Delete(ctx context.Context, key string) error {
	if _, err := k.c.Delete(ctx, &pb.KVDeleteRequest{Key: key}); err != nil {
		return decode(err)
	}
	return nil
}

func (k *kvClient) List(ctx context.Context, prefix, after string, limit int) ([]KVEntry, error) {
	r, err := k.c.List(ctx, &pb.KVListRequest{Prefix: prefix, After: after, Limit: int32(min(max(limit, 0), 1<<30))})
	if err != nil {
		return nil, decode(err)
	}
	out := make([]KVEntry, len(r.GetEntries()))
	for i, e := range r.GetEntries() {
		out[i] = KVEntry{Key: e.GetKey(), Value: append([]byte{}, e.GetValue()...)}
	}
	return out, nil
}

func (k *kvClient) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	r, err := k.c.CompareAndSwap(ctx, &pb.KVCompareAndSwapRequest{
		Key: key, Old: old, OldAbsent: old == nil, New: new, Delete: new == nil, TtlMs: ttlMillis(ttl),
	})
	if err != nil {
		return false, decode(err)
	}
	return r.GetSwapped(), nil
}

func (k *kvClient) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	r, err := k.c.Add(ctx, &pb.KVAddRequest{Key: key, Delta: delta, TtlMs: ttlMillis(ttl)})
	if err != nil {
		return 0, decode(err)
	}
	return r.GetValue(), nil
}

// noKV is the KV of a plugin configured without host services.
type noKV struct{}

var errNoHost = &Error{Code: CodeUnavailable, Message: "the host offers no KV to this plugin"}

func (noKV) Get(context.Context, string) ([]byte, error)                  { return nil, errNoHost }
func (noKV) Put(context.Context, string, []byte, time.Duration) error     { return errNoHost }
func (noKV) Delete(context.Context, string) error                         { return errNoHost }
func (noKV) List(context.Context, string, string, int) ([]KVEntry, error) { return nil, errNoHost }
func (noKV) CompareAndSwap(context.Context, string, []byte, []byte, time.Duration) (bool, error) {
	return false, errNoHost
}
func (noKV) Add(context.Context, string, int64, time.Duration) (int64, error) { return 0, errNoHost }
