package sdk

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/handoffd/handoff/providers/internal/wire"
)

// Serve runs the verifier that f makes as a handoff plugin and returns when
// the host stops it. It is the whole main of a plugin:
//
//	func main() { sdk.Serve(totp.New) }
//
// and handoff's `handoff plugin <kind>` calls it the same way for its
// built-ins. Serve speaks go-plugin's gRPC protocol (with AutoMTLS when the
// host asks for it), recovers panics in plugin methods into ErrInternal and
// keeps serving, and exits when the host process goes away.
//
// Do not write to standard output before or during Serve: go-plugin reads
// the plugin's first stdout line as its handshake, so a stray print makes
// the host refuse the plugin ("Unrecognized remote plugin message"). Log
// with Logger instead, which writes to standard error.
//
// Run by hand (not by handoff), the binary says it is a plugin and exits 1.
func Serve(f Factory) {
	if os.Getenv(wire.MagicCookieKey) == wire.MagicCookieValue {
		go watchParent(os.Getppid(), 500*time.Millisecond)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         Plugins(f),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts,
				grpc.ChainUnaryInterceptor(recoverUnary),
				grpc.ChainStreamInterceptor(recoverStream),
			)
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "sdk",
			Output:     stderr,
			JSONFormat: true,
			Level:      hclog.LevelFromString(hclogLevel(levelFromEnv())),
		}),
	})
}

// watchParent exits the plugin when its parent (the host) is gone: the
// parent pid changes when the process is re-parented. Pdeathsig, which the
// host also sets, is Linux-only and tied to the host thread that spawned
// the plugin; this is the portable backstop.
func watchParent(ppid int, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			os.Exit(2)
		}
	}
}

// recoverUnary turns a panic in any unary handler into ErrInternal. The
// adapter's methods recover their own panics with more context; this
// catches the rest (health, broker).
func recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			Logger(ctx).Error("plugin panicked", "method", info.FullMethod, "panic", fmt.Sprint(r))
			err = encode(fmt.Errorf("plugin panicked in %s: %v: %w", info.FullMethod, r, ErrInternal))
		}
	}()
	return handler(ctx, req)
}

func recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			Logger(ss.Context()).Error("plugin panicked", "method", info.FullMethod, "panic", fmt.Sprint(r))
			err = encode(fmt.Errorf("plugin panicked in %s: %v: %w", info.FullMethod, r, ErrInternal))
		}
	}()
	return handler(srv, ss)
}
