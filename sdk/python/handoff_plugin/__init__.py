"""handoff_plugin: write a handoff verifier plugin in Python.

A plugin is a few functions and one call::

    from handoff_plugin import Identity, Info, InvalidCredentials, serve

    def configure(config, host):
        ...                       # read config (a dict), keep host.kv

    def verify(req):
        body = req.json()         # InvalidRequest unless a JSON object
        ...
        return Identity(subject=body["user"])

    serve(describe=Info(name="mine", version="1.0.0", proves_identity=True),
          configure=configure, verify=verify)

serve() speaks go-plugin's gRPC protocol with strict AutoMTLS, exactly as
handoff's Go SDK (providers/sdk) does; docs/plugin-protocol.md is the
protocol. Errors raised on purpose are this package's exceptions, which
cross to the host as contract codes; anything else is INTERNAL. The host KV
(host.kv) keeps the plugin's state. Log with handoff_plugin.logger, never
with print: standard output carries the handshake.
"""

from . import _parent  # noqa: F401  (first: the parent's pid before the slow imports)
from . import _serve
from .config import decode_config
from .errors import ConfigError, Internal, InvalidCredentials, InvalidRequest, Misconfigured, NotFound, \
    PluginError, Unavailable
from .kv import COUNTER_SIZE, KV, Host, decode_counter, encode_counter
from .log import logger
from .values import FLOW_DIRECT, FLOW_REDIRECT, BeginRequest, BeginResult, CompleteRequest, EnrollRequest, \
    EnrollResult, Identity, Info, RefreshRequest, RefreshResult, Request
from ._serve import serve

__all__ = [
    "serve", "logger", "decode_config", "Info", "Request", "Identity", "EnrollRequest", "EnrollResult", "BeginRequest",
    "BeginResult", "CompleteRequest", "RefreshRequest", "RefreshResult", "FLOW_DIRECT", "FLOW_REDIRECT",
    "PluginError", "InvalidCredentials", "InvalidRequest", "Unavailable", "Internal", "NotFound",
    "Misconfigured", "ConfigError", "KV", "Host", "encode_counter", "decode_counter", "COUNTER_SIZE",
]

if _serve.run_by_host():
    # Run by the host: from now on only the handshake reaches stdout.
    _serve._stdout.take()
