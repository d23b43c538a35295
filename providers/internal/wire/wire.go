// Package wire holds what both ends of the plugin channel must agree on
// and that plugin authors never see: the go-plugin handshake, the plugin
// name, and the error codec between contract codes and gRPC statuses.
package wire

import (
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/handoffd/handoff/providers/proto/verifier/v1"
)

// ProtocolVersion is the go-plugin protocol version of verifier.v1.
const ProtocolVersion = 1

// PluginName is the one plugin a verifier process serves.
const PluginName = "verifier"

// The magic cookie. It is a UX feature, not a security one: it makes a
// plugin binary run by hand say so instead of hanging. Never change it; a
// change breaks every plugin built before.
const (
	MagicCookieKey   = "HANDOFF_PLUGIN_MAGIC_COOKIE"
	MagicCookieValue = "7d1c0c6f3b5e4a9b8f0e2d4c6a8b1e3f5d7c9a0b2e4f6a8c"
)

// Handshake is the go-plugin handshake both sides use.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   MagicCookieKey,
	MagicCookieValue: MagicCookieValue,
}

// EnvLogLevel tells a plugin the lowest log level the host keeps.
const EnvLogLevel = "HANDOFF_PLUGIN_LOG_LEVEL"

// grpcCode is the gRPC code sent with each contract code, for readers that
// look only at the status (grpcurl, other languages).
func grpcCode(c pb.ErrorCode) codes.Code {
	switch c {
	case pb.ErrorCode_ERROR_CODE_INVALID_CREDENTIALS:
		return codes.Unauthenticated
	case pb.ErrorCode_ERROR_CODE_INVALID_REQUEST:
		return codes.InvalidArgument
	case pb.ErrorCode_ERROR_CODE_UNAVAILABLE:
		return codes.Unavailable
	case pb.ErrorCode_ERROR_CODE_NOT_FOUND:
		return codes.NotFound
	case pb.ErrorCode_ERROR_CODE_MISCONFIGURED:
		return codes.FailedPrecondition
	}
	return codes.Internal
}

// Status builds the gRPC status error for a contract code and message.
func Status(code pb.ErrorCode, msg string) error {
	st := status.New(grpcCode(code), msg)
	if withDetail, err := st.WithDetails(&pb.ErrorDetail{Code: code}); err == nil {
		st = withDetail
	}
	return st.Err()
}

// Decoded is a failed call's error as the receiving side sees it.
type Decoded struct {
	// Code is the contract code the other side meant, or UNSPECIFIED when
	// the error did not come from it (a transport failure, a deadline).
	Code pb.ErrorCode
	// GRPC is the status code.
	GRPC codes.Code
	// Message is the status message.
	Message string
}

// Decode reads a gRPC call's error.
func Decode(err error) Decoded {
	st, ok := status.FromError(err)
	if !ok {
		return Decoded{GRPC: codes.Unknown, Message: err.Error()}
	}
	d := Decoded{GRPC: st.Code(), Message: st.Message()}
	for _, det := range st.Details() {
		if ed, ok := det.(*pb.ErrorDetail); ok {
			d.Code = ed.GetCode()
		}
	}
	return d
}

// ErrUnsupported is returned for a call to a capability the plugin lacks.
// Package providers exports it as providers.ErrUnsupported.
var ErrUnsupported = errors.New("the plugin does not support this operation")
