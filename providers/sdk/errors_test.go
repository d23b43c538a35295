package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "github.com/handoffd/handoff/providers/proto/verifier/v1"
	"github.com/handoffd/handoff/providers/sdk"
)

var allSentinels = map[sdk.Code]error{
	sdk.CodeInvalidCredentials: sdk.ErrInvalidCredentials,
	sdk.CodeInvalidRequest:     sdk.ErrInvalidRequest,
	sdk.CodeUnavailable:        sdk.ErrUnavailable,
	sdk.CodeInternal:           sdk.ErrInternal,
	sdk.CodeNotFound:           sdk.ErrNotFound,
	sdk.CodeMisconfigured:      sdk.ErrMisconfigured,
}

// The wire enum and sdk.Code share their numbers: the codec casts.
func TestCodesMatchWireEnum(t *testing.T) {
	want := map[sdk.Code]pb.ErrorCode{
		sdk.CodeInvalidCredentials: pb.ErrorCode_ERROR_CODE_INVALID_CREDENTIALS,
		sdk.CodeInvalidRequest:     pb.ErrorCode_ERROR_CODE_INVALID_REQUEST,
		sdk.CodeUnavailable:        pb.ErrorCode_ERROR_CODE_UNAVAILABLE,
		sdk.CodeInternal:           pb.ErrorCode_ERROR_CODE_INTERNAL,
		sdk.CodeNotFound:           pb.ErrorCode_ERROR_CODE_NOT_FOUND,
		sdk.CodeMisconfigured:      pb.ErrorCode_ERROR_CODE_MISCONFIGURED,
	}
	if len(want) != len(pb.ErrorCode_name)-1 {
		t.Fatalf("the wire has %d codes, the sdk %d", len(pb.ErrorCode_name)-1, len(want))
	}
	for c, w := range want {
		if int32(c) != int32(w) {
			t.Errorf("%v = %d on the wire, %d in the sdk", c, w, c)
		}
	}
}

func TestErrorMatching(t *testing.T) {
	for code, sentinel := range allSentinels {
		e := &sdk.Error{Code: code, Message: "details"}
		if !errors.Is(e, sentinel) || e.Error() != "details" {
			t.Errorf("%v: Is=%v Error=%q", code, errors.Is(e, sentinel), e.Error())
		}
		for other, os := range allSentinels {
			if other != code && errors.Is(e, os) {
				t.Errorf("%v matches %v", code, other)
			}
		}
		if got := sdk.CodeOf(fmt.Errorf("ctx: %w", e)); got != code {
			t.Errorf("CodeOf(wrapped %v) = %v", code, got)
		}
		if sentinel.Error() != code.String() {
			t.Errorf("%v text %q", code, sentinel.Error())
		}
	}
	if sdk.CodeOf(errors.New("x")) != sdk.CodeInternal {
		t.Error("a plain error is not internal")
	}
	if sdk.CodeOf(context.DeadlineExceeded) != sdk.CodeUnavailable || sdk.CodeOf(fmt.Errorf("x: %w", context.Canceled)) != sdk.CodeUnavailable {
		t.Error("context errors are not unavailable")
	}
	ce := &sdk.ConfigError{Key: "smtp.port", Message: "want an integer"}
	if !errors.Is(ce, sdk.ErrInvalidRequest) || ce.Error() != "config: smtp.port: want an integer" || sdk.CodeOf(ce) != sdk.CodeInvalidRequest {
		t.Errorf("ConfigError: %v", ce)
	}
}
