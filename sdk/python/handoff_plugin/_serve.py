"""serve(): go-plugin's gRPC protocol, plugin side, for handoff's verifier.

docs/plugin-protocol.md describes what is spoken here; the Go SDK
(providers/sdk, over hashicorp/go-plugin) is the reference this matches.
"""

import concurrent.futures
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import empty_pb2

from . import _parent, _tls, errors, kv as kvmod
from .config import config_section
from .log import _call, logger
from .values import BeginRequest, CompleteRequest, EnrollRequest, EnrollResult, Identity, Info, RefreshRequest, \
    RefreshResult, Request, BeginResult
from ._pb import grpc_broker_pb2, grpc_controller_pb2, health_pb2, verifier_pb2 as pb

# The go-plugin handshake handoff's host expects (providers/internal/wire).
MAGIC_COOKIE_KEY = "HANDOFF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "7d1c0c6f3b5e4a9b8f0e2d4c6a8b1e3f5d7c9a0b2e4f6a8c"
CORE_PROTOCOL_VERSION = 1
PROTOCOL_VERSION = 1

# go-plugin's host names its health check service "plugin".
HEALTH_SERVICE = "plugin"

# How long Configure waits for the host to announce a broker id, as
# go-plugin's GRPCBroker.Dial does.
BROKER_DIAL_TIMEOUT = 5.0

# A remaining time beyond this (seconds) is a call without a deadline.
_NO_DEADLINE = 365 * 24 * 3600

# Unix socket paths are limited to 108 bytes with the terminating NUL.
_MAX_SOCKET_PATH = 107

_NOT_A_PLUGIN = (
    "This binary is a plugin. These are not meant to be executed directly.\n"
    "Please execute the program that consumes these plugins, which will\n"
    "load any plugins automatically\n"
)


class _Stdout:
    """Keeps standard output for the handshake alone: the real stdout is
    kept on a private descriptor and fd 1 (and sys.stdout) now write to
    stderr, so a stray print cannot take the handshake's place."""

    def __init__(self):
        self.out = None

    def take(self):
        if self.out is None:
            sys.stdout.flush()
            self.out = os.fdopen(os.dup(1), "w")
            os.dup2(2, 1)
            sys.stdout = sys.stderr
        return self.out


_stdout = _Stdout()


def run_by_host():
    """Whether the process was started by handoff's host (the cookie is set)."""
    return os.environ.get(MAGIC_COOKIE_KEY) == MAGIC_COOKIE_VALUE


class _Broker:
    """The plugin's GRPCBroker: the host announces the services it offers
    (ConnInfo{service_id, network, address}) on the StartStream stream, and
    the plugin dials them. Broker multiplexing is never used."""

    def __init__(self, creds):
        self._creds = creds
        self._cv = threading.Condition()
        self._infos = {}
        self._id, self._channel = None, None

    def start_stream(self, requests, context):
        for info in requests:
            with self._cv:
                self._infos[info.service_id] = info
                self._cv.notify_all()
        return
        yield  # a generator: the plugin never announces services itself

    def channel(self, service_id):
        """The one channel to the host services, dialled once and kept while
        the host names the same broker id (as the Go SDK's hostConn)."""
        with self._cv:
            if self._id == service_id:
                return self._channel
            if not self._cv.wait_for(lambda: service_id in self._infos, BROKER_DIAL_TIMEOUT):
                raise errors.Unavailable("dial host services: timeout waiting for connection info")
            info = self._infos[service_id]
        target = "unix:" + info.address if info.network == "unix" else info.address
        options = [("grpc.ssl_target_name_override", "localhost"), ("grpc.default_authority", "localhost")]
        if self._creds is None:
            ch = grpc.insecure_channel(target, options=options)
        else:
            ch = grpc.secure_channel(target, self._creds, options=options)
        remaining = getattr(_call, "deadline", None)
        wait = BROKER_DIAL_TIMEOUT if remaining is None else max(0.0, remaining - time.monotonic())
        failure = _connect(ch, wait)
        if failure is not None:
            ch.close()
            raise errors.Unavailable("dial host services: " + failure)
        with self._cv:
            old, self._id, self._channel = self._channel, service_id, ch
        if old is not None:
            old.close()
        return ch


def _connect(ch, wait):
    """Connects ch within wait seconds, as go-plugin's blocking dial with
    FailOnNonTempDialError does: a refused TLS handshake or connection
    fails at once instead of being retried until the deadline. Returns
    None when connected, else why not."""
    states = queue.Queue()
    ch.subscribe(states.put, try_to_connect=True)
    end = time.monotonic() + wait
    try:
        while True:
            try:
                state = states.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return "the connection (and its TLS handshake) did not complete in time"
            if state == grpc.ChannelConnectivity.READY:
                return None
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                break
    finally:
        ch.unsubscribe(states.put)
    # Learn why from one call that does not wait for the connection.
    probe = ch.unary_unary("/handoff.verifier.v1.HostKV/Get")
    try:
        probe(b"", timeout=max(0.1, min(1.0, end - time.monotonic())))
    except grpc.RpcError as e:
        return e.details() or str(e.code())
    return "the connection failed"


def _unary(service, methods):
    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                  response_serializer=lambda m: m.SerializeToString())
        for name, (fn, req) in methods.items()
    })


def _stream(service, name, fn, req, unary_request):
    make = grpc.unary_stream_rpc_method_handler if unary_request else grpc.stream_stream_rpc_method_handler
    return grpc.method_handlers_generic_handler(service, {
        name: make(fn, request_deserializer=req.FromString, response_serializer=lambda m: m.SerializeToString()),
    })


def _call_user(context, method, request_id, fn, *args):
    """Runs a plugin function for one call: its deadline and request id are
    set for the KV and the logger; a PluginError ends the call with its
    code, any other exception with INTERNAL (logged with its traceback),
    and the plugin keeps serving."""
    remaining = context.time_remaining()
    # A call without a deadline has none, or (grpcio 1.51) one centuries
    # away, which no timeout can hold.
    _call.deadline = None if remaining is None or remaining > _NO_DEADLINE else time.monotonic() + remaining
    _call.request_id = request_id
    try:
        try:
            return fn(*args)
        except errors.PluginError as e:
            code, message = e.code, e.message
        except TimeoutError as e:
            code, message = errors.UNAVAILABLE, str(e) or "timed out"
        except Exception as e:
            logger.error("plugin raised", exc_info=True, extra={"method": method})
            code, message = errors.INTERNAL, "plugin raised in %s: %s: %s" % (method, type(e).__name__, e)
    finally:
        _call.deadline = None
        _call.request_id = ""
    errors.abort(context, code, message)


def _request(r):
    return Request(payload=bytes(r.payload), client_ip=r.client_ip, user_agent=r.user_agent, request_id=r.request_id)


def _identity_pb(method, ident):
    if not isinstance(ident, Identity):
        raise errors.Internal("%s returned %s, want an Identity" % (method, type(ident).__name__))
    out = pb.Identity(subject=ident.subject, email=ident.email, email_verified=ident.email_verified,
                      phone=ident.phone, name=ident.name)
    if ident.claims:
        out.claims = json.dumps(ident.claims, separators=(",", ":")).encode()
    return out


def _want(method, value, cls):
    if not isinstance(value, cls):
        raise errors.Internal("%s returned %s, want %s" % (method, type(value).__name__, cls.__name__))
    return value


class _Verifier:
    """The handoff.verifier.v1.Verifier service over the plugin's functions."""

    def __init__(self, fns, broker):
        self.fns = fns
        self.broker = broker

    def capabilities(self):
        caps = []
        if self.fns.get("begin"):
            caps.append("redirector")
        if self.fns.get("enroll"):
            caps.append("enroller")
        if self.fns.get("check"):
            caps.append("guard")
        if self.fns.get("refresh"):
            caps.append("refresher")
        return caps

    def describe(self, req, context):
        def run():
            info = self.fns["describe"]
            info = _want("describe", info() if callable(info) else info, Info)
            return pb.DescribeResponse(name=info.name, version=info.version, flows=list(info.flows),
                                       proves_identity=info.proves_identity, capabilities=self.capabilities())
        return _call_user(context, "Describe", "", run)

    def configure(self, req, context):
        def run():
            host = kvmod.Host(kvmod.NoKV())
            if req.host_broker_id:
                host = kvmod.Host(kvmod.KV(self.broker.channel(req.host_broker_id)))
            self.fns["configure"](config_section(bytes(req.config)), host)
            return pb.ConfigureResponse()
        return _call_user(context, "Configure", "", run)

    def verify(self, req, context):
        r = _request(req.request)
        return _call_user(context, "Verify", r.request_id,
                          lambda: pb.VerifyResponse(identity=_identity_pb("verify", self.fns["verify"](r))))

    def check(self, req, context):
        r = _request(req.request)

        def run():
            self.fns["check"](r)
            return pb.CheckResponse()
        return _call_user(context, "Check", r.request_id, run)

    def begin(self, req, context):
        def run():
            res = _want("begin", self.fns["begin"](BeginRequest(callback_url=req.callback_url,
                                                                scopes=list(req.scopes),
                                                                request_id=req.request_id)), BeginResult)
            return pb.BeginResponse(auth_url=res.auth_url, state=bytes(res.state))
        return _call_user(context, "Begin", req.request_id, run)

    def complete(self, req, context):
        def run():
            query = {}
            for q in req.query:
                query.setdefault(q.key, []).extend(q.values)
            ident = self.fns["complete"](CompleteRequest(query=query, state=bytes(req.state),
                                                         callback_url=req.callback_url))
            return pb.CompleteResponse(identity=_identity_pb("complete", ident), access_token=ident.access_token,
                                       access_token_expiry=ident.access_token_expiry,
                                       refresh_token=ident.refresh_token)
        return _call_user(context, "Complete", "", run)

    def refresh(self, req, context):
        def run():
            res = _want("refresh", self.fns["refresh"](RefreshRequest(refresh_token=req.refresh_token)),
                        RefreshResult)
            return pb.RefreshResponse(access_token=res.access_token, access_token_expiry=res.access_token_expiry,
                                      refresh_token=res.refresh_token)
        return _call_user(context, "Refresh", "", run)

    def enroll(self, req, context):
        def run():
            res = _want("enroll", self.fns["enroll"](EnrollRequest(user_id=req.user_id, payload=bytes(req.payload))),
                        EnrollResult)
            data = b"" if res.data is None else json.dumps(res.data, separators=(",", ":")).encode()
            return pb.EnrollResponse(subject=res.subject, data=data)
        return _call_user(context, "Enroll", "", run)

    def handler(self):
        methods = {"Describe": (self.describe, pb.DescribeRequest),
                   "Configure": (self.configure, pb.ConfigureRequest),
                   "Verify": (self.verify, pb.VerifyRequest)}
        optional = {"check": ("Check", pb.CheckRequest), "begin": ("Begin", pb.BeginRequest),
                    "complete": ("Complete", pb.CompleteRequest), "refresh": ("Refresh", pb.RefreshRequest),
                    "enroll": ("Enroll", pb.EnrollRequest)}
        for key, (name, req) in optional.items():
            if self.fns.get(key):  # a missing one answers UNIMPLEMENTED, which the host reports as unsupported
                methods[name] = (getattr(self, key), req)
        return _unary("handoff.verifier.v1.Verifier", methods)


def _health_check(req, context):
    if req.service in ("", HEALTH_SERVICE):
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")


def _socket_path():
    base = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix="plugin", dir=base)
    os.close(fd)
    os.unlink(path)
    if len(path.encode()) > _MAX_SOCKET_PATH:
        raise SystemExit("handoff plugin: socket path %s is longer than %d bytes" % (path, _MAX_SOCKET_PATH))
    return path


def _socket_group(path):
    group = os.environ.get("PLUGIN_UNIX_SOCKET_GROUP")
    if not group:
        return
    import grp
    gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    os.chown(path, -1, gid)
    os.chmod(path, 0o660)


def _watch_parent(ppid, every=0.5):
    """Exits when the parent (the host) is gone: the parent pid changes when
    the process is re-parented. The host also sets Pdeathsig (Linux only);
    this is the portable backstop."""
    while True:
        time.sleep(every)
        if os.getppid() != ppid:
            os._exit(2)


def serve(describe, configure, verify, enroll=None, check=None, begin=None, complete=None, refresh=None,
          max_workers=32):
    """Serves a verifier made of these functions as a handoff plugin and
    exits when the host stops it. It is the whole main of a plugin.

    describe   an Info, or a function returning one.
    configure  configure(config: dict, host: Host): config is the provider's
               section (a dict, {} when absent); keep host.kv. Raise
               ConfigError naming bad keys.
    verify     verify(req: Request) -> Identity.
    enroll     enroll(req: EnrollRequest) -> EnrollResult (optional).
    check      check(req: Request) -> None, a guard (optional).
    begin, complete  a redirect flow, both or neither (optional).
    refresh    refresh(req: RefreshRequest) -> RefreshResult (optional).

    Functions raise the errors module's exceptions; they run on a pool of
    threads and must be safe to call concurrently. Run by hand (without the
    host's cookie) the program says it is a plugin and exits 1.
    """
    if bool(begin) != bool(complete):
        raise ValueError("serve: begin and complete come together (a redirect flow needs both)")
    if refresh and not begin:
        raise ValueError("serve: refresh needs begin and complete")
    if not run_by_host():
        sys.stderr.write(_NOT_A_PLUGIN)
        sys.exit(1)
    out = _stdout.take()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host stops its plugins itself, as go-plugin's do
    threading.Thread(target=_watch_parent, args=(_parent.PID,), daemon=True, name="parent-watch").start()

    host_cert = os.environ.get("PLUGIN_CLIENT_CERT", "").encode() or None
    ident = _tls.generate() if host_cert else None
    broker = _Broker(_tls.channel_credentials(grpc, ident, host_cert) if ident else None)
    fns = dict(describe=describe, configure=configure, verify=verify, enroll=enroll, check=check, begin=begin,
               complete=complete, refresh=refresh)

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
                         options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
    stopping = threading.Event()

    def shutdown(req, context):
        # Answer first, then stop: the host waits up to 2 s for the process
        # to exit before it kills it.
        threading.Thread(target=lambda: (stopping.set(), server.stop(0.2)), daemon=True).start()
        return grpc_controller_pb2.Empty()

    def stdio(req, context):
        # Nothing is forwarded here: the host reads stderr directly. The
        # stream stays open so the host does not warn it is missing.
        stopping.wait()
        return
        yield

    def health_watch(req, context):
        yield _health_check(req, context)
        stopping.wait()

    server.add_generic_rpc_handlers((
        _Verifier(fns, broker).handler(),
        _unary("grpc.health.v1.Health", {"Check": (_health_check, health_pb2.HealthCheckRequest)}),
        _stream("grpc.health.v1.Health", "Watch", health_watch, health_pb2.HealthCheckRequest, True),
        _stream("plugin.GRPCBroker", "StartStream", broker.start_stream, grpc_broker_pb2.ConnInfo, False),
        _unary("plugin.GRPCController", {"Shutdown": (shutdown, grpc_controller_pb2.Empty)}),
        _stream("plugin.GRPCStdio", "StreamStdio", stdio, empty_pb2.Empty, True),
    ))
    path = _socket_path()
    if ident:
        server.add_secure_port("unix:" + path, _tls.server_credentials(grpc, ident, host_cert))
    else:
        server.add_insecure_port("unix:" + path)
    server.start()
    _socket_group(path)
    out.write("%d|%d|unix|%s|grpc|%s\n" % (CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, path,
                                           ident.handshake_field() if ident else ""))
    out.flush()
    server.wait_for_termination()
    stopping.set()
    try:
        os.unlink(path)
    except OSError:
        pass
    sys.stderr.flush()
    os._exit(0)
