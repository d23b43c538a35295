"""Process tests: the SDK's plugin against a host written here in Python,
speaking go-plugin's protocol the way handoff's Go host does (AutoMTLS,
the broker, the controller), so the protocol is tested without Go."""

import base64
import concurrent.futures
import itertools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

from handoff_plugin import _serve, _tls, errors
from handoff_plugin._pb import grpc_broker_pb2, grpc_controller_pb2, health_pb2, verifier_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
PLUGIN = os.path.join(HERE, "plugin_echo.py")


def _method(ch, path, req, resp):
    return ch.unary_unary(path, request_serializer=req.SerializeToString, response_deserializer=resp.FromString)


class MemoryKV:
    """A HostKV with Get only, served over the broker by the test host."""

    def __init__(self, data):
        self.data = data

    def get(self, req, context):
        if req.key not in self.data:
            errors.abort(context, errors.NOT_FOUND, "")
        return pb.KVGetResponse(value=self.data[req.key])


class Host:
    """Starts the plugin with go-plugin's environment and connects to it."""

    def __init__(self, test, plugin_trusts=None, env=None, plugin=PLUGIN):
        self.ident = _tls.generate()
        self.tmp = tempfile.mkdtemp(prefix="hpt", dir="/tmp")  # short: unix socket paths are limited
        penv = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": SDK, _serve.MAGIC_COOKIE_KEY: _serve.MAGIC_COOKIE_VALUE,
                "PLUGIN_PROTOCOL_VERSIONS": "1", "PLUGIN_UNIX_SOCKET_DIR": self.tmp,
                "PLUGIN_CLIENT_CERT": (plugin_trusts or self.ident).cert_pem.decode()}
        penv.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-B", plugin], env=penv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        test.addCleanup(self.close)
        self.line = self.proc.stdout.readline().decode()
        self.ready = time.monotonic() - self.started
        fields = self.line.rstrip("\n").split("|")
        test.assertEqual(len(fields), 6, self.line)
        self.core, self.proto, self.network, self.addr, self.kind, self.cert = fields
        pad = "=" * (-len(self.cert) % 4)
        plugin_pem = _der_to_pem(base64.b64decode(self.cert + pad))
        creds = grpc.ssl_channel_credentials(root_certificates=plugin_pem, private_key=self.ident.key_pem,
                                             certificate_chain=self.ident.cert_pem)
        self.ch = grpc.secure_channel("unix:" + self.addr, creds,
                                      options=[("grpc.ssl_target_name_override", "localhost")])
        self.kv_server = None

    def call(self, name, req, resp, **kw):
        return _method(self.ch, "/handoff.verifier.v1.Verifier/" + name, req, resp)(req, timeout=10, **kw)

    def offer_kv(self, data, service_id=7):
        """Serves a HostKV on a new socket, trusting only the plugin's
        certificate, and announces it on the broker stream."""
        plugin_pem = _der_to_pem(base64.b64decode(self.cert + "=" * (-len(self.cert) % 4)))
        self.kv_server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        kv = MemoryKV(data)
        self.kv_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "handoff.verifier.v1.HostKV", {"Get": grpc.unary_unary_rpc_method_handler(
                kv.get, request_deserializer=pb.KVGetRequest.FromString,
                response_serializer=pb.KVGetResponse.SerializeToString)}),))
        path = os.path.join(self.tmp, "host%d" % service_id)
        self.kv_server.add_secure_port("unix:" + path, grpc.ssl_server_credentials(
            [(self.ident.key_pem, self.ident.cert_pem)], root_certificates=plugin_pem, require_client_auth=True))
        self.kv_server.start()
        stream = self.ch.stream_stream("/plugin.GRPCBroker/StartStream",
                                       request_serializer=grpc_broker_pb2.ConnInfo.SerializeToString,
                                       response_deserializer=grpc_broker_pb2.ConnInfo.FromString)
        self.broker_call = stream(itertools.chain([grpc_broker_pb2.ConnInfo(
            service_id=service_id, network="unix", address=path)], _Block()))
        return service_id

    def shutdown(self):
        _method(self.ch, "/plugin.GRPCController/Shutdown", grpc_controller_pb2.Empty,
                grpc_controller_pb2.Empty)(grpc_controller_pb2.Empty(), timeout=5)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        if self.kv_server:
            self.kv_server.stop(None)
        self.ch.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Block:
    """Never yields: keeps the broker stream open like the Go host does."""

    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(3600)


def _der_to_pem(der):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


class ProcessTest(unittest.TestCase):
    def test_not_run_by_the_host(self):
        env = {k: v for k, v in os.environ.items() if k != _serve.MAGIC_COOKIE_KEY}
        env["PYTHONPATH"] = SDK
        p = subprocess.run([sys.executable, "-B", PLUGIN], env=env, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"This binary is a plugin", p.stderr)
        self.assertEqual(p.stdout, b"stray output before serve\n")  # not run by a host: stdout is left alone

    def test_handshake_mtls_broker_and_shutdown(self):
        h = Host(self)
        self.assertEqual((h.core, h.proto, h.network, h.kind), ("1", "1", "unix", "grpc"))
        self.assertTrue(stat.S_ISSOCK(os.stat(h.addr).st_mode))
        self.assertNotIn("=", h.cert)
        # The health service go-plugin pings.
        st = _method(h.ch, "/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest,
                     health_pb2.HealthCheckResponse)(health_pb2.HealthCheckRequest(service="plugin"), timeout=10)
        self.assertEqual(st.status, health_pb2.HealthCheckResponse.SERVING)
        d = h.call("Describe", pb.DescribeRequest(), pb.DescribeResponse)
        self.assertEqual((d.name, list(d.capabilities), d.proves_identity), ("echo", ["enroller"], True))
        h.call("Configure", pb.ConfigureRequest(config=b"{}", host_broker_id=h.offer_kv({"k": b"alice"})),
               pb.ConfigureResponse)
        r = h.call("Verify", pb.VerifyRequest(request=pb.Request(payload=b'{"key":"k"}')), pb.VerifyResponse)
        self.assertEqual((r.identity.subject, r.identity.claims), ("alice", b'{"n":1}'))
        with self.assertRaises(grpc.RpcError) as cm:
            h.call("Verify", pb.VerifyRequest(request=pb.Request(payload=b'{"key":"nope"}')), pb.VerifyResponse)
        self.assertIsInstance(errors.from_rpc_error(cm.exception), errors.NotFound)
        # Missing capabilities answer UNIMPLEMENTED.
        with self.assertRaises(grpc.RpcError) as cm:
            h.call("Begin", pb.BeginRequest(), pb.BeginResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        e = h.call("Enroll", pb.EnrollRequest(user_id="u"), pb.EnrollResponse)
        self.assertEqual((e.subject, e.data), ("u", b'{"ok":true}'))
        # The host's deadline bounds the call.
        with self.assertRaises(grpc.RpcError) as cm:
            _method(h.ch, "/handoff.verifier.v1.Verifier/Verify", pb.VerifyRequest, pb.VerifyResponse)(
                pb.VerifyRequest(request=pb.Request(payload=b'{"key":"k","sleep":0.3}')), timeout=0.1)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # Shutdown ends the process well within go-plugin's 2 s grace, and
        # removes the socket.
        start = time.monotonic()
        h.shutdown()
        self.assertEqual(h.proc.wait(timeout=2), 0)
        self.assertLess(time.monotonic() - start, 1.5)
        self.assertFalse(os.path.exists(h.addr))
        stderr = h.proc.stderr.read()
        self.assertIn(b"stray output before serve", stderr)  # the print went to stderr, not the handshake

    def test_refuses_a_host_with_another_certificate(self):
        h = Host(self, plugin_trusts=_tls.generate())
        with self.assertRaises(grpc.RpcError) as cm:
            h.call("Describe", pb.DescribeRequest(), pb.DescribeResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_exits_when_the_parent_dies(self):
        env = dict(os.environ, PYTHONPATH=SDK, PLUGIN_CLIENT_CERT=_tls.generate().cert_pem.decode(),
                   PLUGIN_UNIX_SOCKET_DIR="/tmp", **{_serve.MAGIC_COOKIE_KEY: _serve.MAGIC_COOKIE_VALUE})
        # A parent that starts the plugin, waits for its handshake, prints
        # its pid and exits, as a host killed with SIGKILL would.
        parent = subprocess.run([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(sys.argv[1:], "
                                 "stdout=subprocess.PIPE, stderr=subprocess.DEVNULL); p.stdout.readline(); "
                                 "print(p.pid)", sys.executable, "-B", PLUGIN], env=env, capture_output=True,
                                timeout=30)
        pid = int(parent.stdout)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            self.assertFalse(_alive(pid), "the plugin outlived its parent")
        finally:
            if _alive(pid):
                os.kill(pid, 9)


class ReadmeTest(unittest.TestCase):
    def test_the_readme_plugin_works(self):
        with open(os.path.join(SDK, "README.md")) as f:
            code = f.read().split("```python\n", 1)[1].split("```", 1)[0]
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(code)
        self.addCleanup(os.unlink, f.name)
        h = Host(self, plugin=f.name)
        with self.assertRaises(grpc.RpcError) as cm:
            h.call("Configure", pb.ConfigureRequest(config=b"{}"), pb.ConfigureResponse)
        self.assertEqual(str(errors.from_rpc_error(cm.exception)), "config: realm: is required")
        h.call("Configure", pb.ConfigureRequest(config=b'{"realm":"x"}', host_broker_id=h.offer_kv(
            {"users/alice": b"pw"})), pb.ConfigureResponse)
        r = h.call("Verify", pb.VerifyRequest(request=pb.Request(payload=b'{"user":"alice","password":"pw"}')),
                   pb.VerifyResponse)
        self.assertEqual(r.identity.subject, "alice")
        for bad in (b'{"user":"alice","password":"no"}', b'{"user":"bob","password":"pw"}'):
            with self.assertRaises(grpc.RpcError) as cm:
                h.call("Verify", pb.VerifyRequest(request=pb.Request(payload=bad)), pb.VerifyResponse)
            self.assertIsInstance(errors.from_rpc_error(cm.exception), errors.InvalidCredentials)


def _alive(pid):
    """Whether pid runs (a zombie waiting for a reaper does not count)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
