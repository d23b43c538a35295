"""The values a plugin's functions take and return."""

import dataclasses
import json
import typing

from .errors import InvalidRequest

# Flows a verifier serves, for Info.flows.
FLOW_DIRECT = "direct"
FLOW_REDIRECT = "redirect"


@dataclasses.dataclass
class Info:
    """What describe() reports. capabilities are filled by serve() from the
    optional functions it was given (enroll, check, begin/complete,
    refresh)."""

    name: str
    version: str
    flows: typing.List[str] = dataclasses.field(default_factory=lambda: [FLOW_DIRECT])
    proves_identity: bool = False


@dataclasses.dataclass
class Request:
    """One verification (verify, check): the client's JSON payload as sent,
    and facts about the HTTP request."""

    payload: bytes = b""
    client_ip: str = ""
    user_agent: str = ""
    request_id: str = ""

    def json(self):
        """The payload as a JSON object (a dict); InvalidRequest otherwise."""
        return read_object(self.payload, "payload")


@dataclasses.dataclass
class Identity:
    """Who a verification proved. subject is stable and unique within the
    provider; the rest is optional. The access/refresh tokens are reported
    by complete() only."""

    subject: str
    email: str = ""
    email_verified: bool = False
    phone: str = ""
    name: str = ""
    claims: typing.Optional[dict] = None
    access_token: str = ""
    access_token_expiry: int = 0  # Unix seconds; 0 is unknown
    refresh_token: str = ""


@dataclasses.dataclass
class EnrollRequest:
    """Registers a credential for user_id; payload is the client's JSON."""

    user_id: str = ""
    payload: bytes = b""

    def json(self):
        """The payload as a JSON object (a dict); InvalidRequest otherwise."""
        return read_object(self.payload, "payload")


@dataclasses.dataclass
class EnrollResult:
    """subject is what a later verify returns for the user; data (a dict, or
    None for {}) is returned to the enrolling caller."""

    subject: str
    data: typing.Optional[dict] = None


@dataclasses.dataclass
class BeginRequest:
    """Starts a redirect flow."""

    callback_url: str = ""
    scopes: typing.List[str] = dataclasses.field(default_factory=list)
    request_id: str = ""


@dataclasses.dataclass
class BeginResult:
    """The IdP's authorize URL and opaque flow state the host keeps and hands
    back to complete(). Never keep flow state in memory."""

    auth_url: str
    state: bytes = b""


@dataclasses.dataclass
class CompleteRequest:
    """Finishes a redirect flow: the callback's query (name -> list of
    values) and the state begin() returned."""

    query: typing.Dict[str, typing.List[str]] = dataclasses.field(default_factory=dict)
    state: bytes = b""
    callback_url: str = ""


@dataclasses.dataclass
class RefreshRequest:
    """Trades an IdP refresh token for new tokens."""

    refresh_token: str = ""


@dataclasses.dataclass
class RefreshResult:
    """The IdP's new tokens; an empty refresh_token keeps the traded one."""

    access_token: str
    access_token_expiry: int = 0
    refresh_token: str = ""


def read_object(raw, what):
    """Decodes raw JSON bytes that must be an object; InvalidRequest if not."""
    text = raw.decode("utf-8", "replace").strip() if isinstance(raw, (bytes, bytearray)) else str(raw).strip()
    if not text.startswith("{"):
        raise InvalidRequest(what + " must be a JSON object")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidRequest(what + ": " + str(e)) from None
    if not isinstance(value, dict):
        raise InvalidRequest(what + " must be a JSON object")
    return value
