"""The contract's error codes and the exceptions that carry them.

Codes, not strings, cross the process boundary: every error a plugin
raises on purpose travels as a gRPC status with a matching gRPC code and an
ErrorDetail{code} in the status details, exactly as the Go SDK sends it
(providers/internal/wire). Raise one of the classes below, bare or with a
message; any other exception reaches the host as INTERNAL.
"""

import grpc

from ._pb import rpc_status_pb2, verifier_pb2

# The codes. Their numbers are the wire enum's (handoff.verifier.v1.ErrorCode)
# and the Go SDK's sdk.Code; never renumber them.
INVALID_CREDENTIALS = 1
INVALID_REQUEST = 2
UNAVAILABLE = 3
INTERNAL = 4
NOT_FOUND = 5
MISCONFIGURED = 6

# The gRPC status code sent with each contract code, for readers that look
# only at the status (grpcurl, the host's transport checks).
_GRPC_CODE = {
    INVALID_CREDENTIALS: grpc.StatusCode.UNAUTHENTICATED,
    INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    INTERNAL: grpc.StatusCode.INTERNAL,
    NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    MISCONFIGURED: grpc.StatusCode.FAILED_PRECONDITION,
}

_DETAIL_TYPE_URL = "type.googleapis.com/handoff.verifier.v1.ErrorDetail"
_DETAILS_TRAILER = "grpc-status-details-bin"


class PluginError(Exception):
    """An error with a contract code. Raise a subclass, not this class.

    str(err) is the message, or the code's default text when there is none;
    a bare ``raise InvalidCredentials()`` reaches the host with an empty
    message, as a bare Go sentinel does.
    """

    code = INTERNAL
    default_text = "internal error"

    def __init__(self, message=""):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message or self.default_text

    def prefixed(self, prefix):
        """The same error with "prefix: " before its message, as Go's
        fmt.Errorf("prefix: %w", err) keeps the code and adds context."""
        return type(self)(prefix + ": " + str(self))


class InvalidCredentials(PluginError):
    """The payload is well formed but proves nothing (wrong or reused code)."""

    code = INVALID_CREDENTIALS
    default_text = "invalid credentials"


class InvalidRequest(PluginError):
    """The payload or the config cannot be read."""

    code = INVALID_REQUEST
    default_text = "invalid request"


class Unavailable(PluginError):
    """The plugin, or a service it depends on, is down or too slow (503)."""

    code = UNAVAILABLE
    default_text = "unavailable"


class Internal(PluginError):
    """A bug: the host answers a generic 500."""

    code = INTERNAL
    default_text = "internal error"


class NotFound(PluginError):
    """The host KV has no value under the key."""

    code = NOT_FOUND
    default_text = "not found"


class Misconfigured(PluginError):
    """A service the plugin calls refused the plugin's own configuration.

    The client gets 503 with no details; the operator gets the message (the
    log, GET /v1/providers), so it must say what was refused and never hold
    a secret.
    """

    code = MISCONFIGURED
    default_text = "misconfigured"


_BY_CODE = {c.code: c for c in (InvalidCredentials, InvalidRequest, Unavailable, Internal, NotFound, Misconfigured)}


class ConfigError(InvalidRequest):
    """Problems with keys of the provider's config: an InvalidRequest.

    problems is a list of (key, message) pairs; key is the dotted path of the
    key ("smtp.port"), or "" for the section as a whole. The message is one
    "config: key: message" line per problem, as the Go SDK's joined
    ConfigErrors read.
    """

    def __init__(self, key_or_problems, message=None):
        if message is not None:
            problems = [(key_or_problems, message)]
        else:
            problems = list(key_or_problems)
        self.problems = problems
        super().__init__("\n".join(_config_line(k, m) for k, m in problems))


def _config_line(key, message):
    return "config: " + message if not key else "config: " + key + ": " + message


def code_of(exc):
    """Returns the contract code an exception travels with."""
    if isinstance(exc, PluginError):
        return exc.code
    if isinstance(exc, TimeoutError):
        return UNAVAILABLE
    return INTERNAL


def _status_details(code, message):
    detail = verifier_pb2.ErrorDetail(code=code)
    st = rpc_status_pb2.RpcStatus(code=_GRPC_CODE[code].value[0], message=message)
    any_ = st.details.add()
    any_.type_url = _DETAIL_TYPE_URL
    any_.value = detail.SerializeToString()
    return st.SerializeToString()


def abort(context, code, message):
    """Ends the call served under a grpc context with the contract code."""
    if code not in _GRPC_CODE:
        code = INTERNAL
    context.set_trailing_metadata(((_DETAILS_TRAILER, _status_details(code, message)),))
    context.abort(_GRPC_CODE[code], message)


def from_rpc_error(err, what="host services"):
    """Turns a failed call's grpc.RpcError into the matching PluginError.

    A status with an ErrorDetail keeps the code the other side meant; a
    transport failure, deadline or cancellation is Unavailable; anything
    else is Internal.
    """
    message = err.details() or ""
    for key, value in err.trailing_metadata() or ():
        if key != _DETAILS_TRAILER:
            continue
        st = rpc_status_pb2.RpcStatus()
        try:
            st.ParseFromString(value)
        except Exception:  # a malformed trailer reads as no detail
            break
        for any_ in st.details:
            if any_.type_url.endswith("/handoff.verifier.v1.ErrorDetail"):
                detail = verifier_pb2.ErrorDetail()
                detail.ParseFromString(any_.value)
                cls = _BY_CODE.get(detail.code)
                if cls is not None:
                    return cls(message)
    if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(what + ": " + message)
    return Internal(what + ": " + message)
