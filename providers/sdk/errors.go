package sdk

import (
	"context"
	"errors"
	"fmt"
)

// Code is an error code of the plugin contract. Codes, not strings, cross
// the process boundary: go-plugin alone would turn every error into a bare
// string the host would have to parse.
type Code int

// The codes. Their numbers are the wire enum's; never renumber them.
const (
	CodeInvalidCredentials Code = 1
	CodeInvalidRequest     Code = 2
	CodeUnavailable        Code = 3
	CodeInternal           Code = 4
	CodeNotFound           Code = 5
	CodeMisconfigured      Code = 6
)

// String returns the code's default message.
func (c Code) String() string {
	switch c {
	case CodeInvalidCredentials:
		return "invalid credentials"
	case CodeInvalidRequest:
		return "invalid request"
	case CodeUnavailable:
		return "unavailable"
	case CodeInternal:
		return "internal error"
	case CodeNotFound:
		return "not found"
	case CodeMisconfigured:
		return "misconfigured"
	}
	return fmt.Sprintf("error code %d", int(c))
}

// Error is an error with a contract code and a message. The host gets one
// back for every error a plugin returns: errors.Is(err, ErrX) holds for its
// code's sentinel, and Message is the plugin's err.Error().
//
// Plugins rarely build one: return a sentinel, or wrap it with a message,
// as in fmt.Errorf("code already used: %w", sdk.ErrInvalidCredentials).
type Error struct {
	Code    Code
	Message string
}

// Error returns the message, or the code's default text.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Code.String()
}

// Is reports whether target is the sentinel of e's code, so that
// errors.Is(&Error{Code: CodeNotFound, Message: "x"}, ErrNotFound) holds.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// The sentinels. Return them, or wrap them with %w; check with errors.Is.
var (
	// ErrInvalidCredentials: the payload is well formed but does not prove
	// who it claims (wrong password, wrong or reused code).
	ErrInvalidCredentials error = &Error{Code: CodeInvalidCredentials}
	// ErrInvalidRequest: the payload or config cannot be read.
	ErrInvalidRequest error = &Error{Code: CodeInvalidRequest}
	// ErrUnavailable: the plugin, or a service it depends on, is down or
	// too slow. The host answers 503 provider_unavailable.
	ErrUnavailable error = &Error{Code: CodeUnavailable}
	// ErrInternal: a bug; the host answers a generic 500. A panic in a
	// plugin method comes back as ErrInternal.
	ErrInternal error = &Error{Code: CodeInternal}
	// ErrNotFound: the host KV has no value under the key.
	ErrNotFound error = &Error{Code: CodeNotFound}
	// ErrMisconfigured: a service the plugin depends on refused the
	// plugin's own configuration (an IdP refusing the client credentials,
	// a captcha service refusing the secret key). It is the operator's to
	// fix, not the user's: the host answers the client as for
	// ErrUnavailable (503 provider_unavailable, no details), and shows the
	// message to the operator (the log, GET /v1/providers with a key). The
	// message must say what was refused and never carry a secret.
	ErrMisconfigured error = &Error{Code: CodeMisconfigured}
)

var sentinels = []error{ErrInvalidCredentials, ErrInvalidRequest, ErrUnavailable, ErrInternal, ErrNotFound, ErrMisconfigured}

// CodeOf returns the contract code of err: the code of the sentinel it
// matches; CodeUnavailable for a context deadline or cancellation;
// CodeInternal for anything else.
func CodeOf(err error) Code {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s.(*Error).Code
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return CodeUnavailable
	}
	return CodeInternal
}

// ConfigError is a problem with one key of a provider's config. It matches
// ErrInvalidRequest. Key is the path of the key, dotted for nested keys
// ("smtp.port"); Message says what is wrong with it.
type ConfigError struct {
	Key     string
	Message string
}

// Error returns "config: key: message".
func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + e.Message
	}
	return "config: " + e.Key + ": " + e.Message
}

// Is makes a ConfigError match ErrInvalidRequest.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidRequest }
