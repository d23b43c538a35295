"""The Verifier service adapter, called as gRPC calls it, for every RPC and
capability (the process tests cover the transport)."""

import unittest

import handoff_plugin as hp
from handoff_plugin import _serve, errors
from handoff_plugin._pb import rpc_status_pb2, verifier_pb2 as pb, health_pb2


class Aborted(Exception):
    pass


class Context:
    """What the adapter uses of a grpc.ServicerContext."""

    def __init__(self, remaining=None):
        self.remaining, self.trailers = remaining, ()

    def time_remaining(self):
        return self.remaining

    def set_trailing_metadata(self, md):
        self.trailers = md

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted()

    def contract_code(self):
        st = rpc_status_pb2.RpcStatus.FromString(dict(self.trailers)["grpc-status-details-bin"])
        return pb.ErrorDetail.FromString(st.details[0].value).code


def redirector(**extra):
    seen = {}

    def begin(req):
        seen["begin"] = req
        return hp.BeginResult(auth_url="https://idp/?state=s", state=b"st")

    def complete(req):
        seen["complete"] = req
        return hp.Identity(subject="s", email="e@x", email_verified=True, access_token="at",
                           access_token_expiry=99, refresh_token="rt")

    fns = dict(describe=hp.Info(name="r", version="1", flows=[hp.FLOW_REDIRECT]), configure=lambda c, h: None,
               verify=lambda r: hp.Identity(subject="v"), begin=begin, complete=complete,
               refresh=lambda r: hp.RefreshResult(access_token="a2", refresh_token=r.refresh_token + "2"),
               check=lambda r: seen.setdefault("check", r), enroll=None)
    fns.update(extra)
    return _serve._Verifier(fns, broker=None), seen


class VerifierTest(unittest.TestCase):
    def call(self, method, req, ctx=None):
        return method(req, ctx or Context())

    def fails(self, method, req, code):
        ctx = Context()
        with self.assertRaises(Aborted):
            method(req, ctx)
        self.assertEqual(ctx.contract_code(), code)
        return ctx.details

    def test_capabilities_in_the_go_sdks_order(self):
        v, _ = redirector(enroll=lambda r: None)
        d = self.call(v.describe, pb.DescribeRequest())
        self.assertEqual(list(d.capabilities), ["redirector", "enroller", "guard", "refresher"])
        self.assertEqual(list(d.flows), ["redirect"])

    def test_redirect_flow_check_and_refresh(self):
        v, seen = redirector()
        b = self.call(v.begin, pb.BeginRequest(callback_url="https://h/cb", scopes=["openid"], request_id="r1"))
        self.assertEqual((b.auth_url, b.state), ("https://idp/?state=s", b"st"))
        self.assertEqual(seen["begin"], hp.BeginRequest(callback_url="https://h/cb", scopes=["openid"],
                                                        request_id="r1"))
        c = self.call(v.complete, pb.CompleteRequest(
            query=[pb.QueryValue(key="code", values=["c1"]), pb.QueryValue(key="code", values=["c2"])],
            state=b"st", callback_url="https://h/cb"))
        self.assertEqual(seen["complete"].query, {"code": ["c1", "c2"]})
        self.assertEqual((c.identity.subject, c.identity.email_verified, c.access_token, c.access_token_expiry,
                          c.refresh_token), ("s", True, "at", 99, "rt"))
        r = self.call(v.refresh, pb.RefreshRequest(refresh_token="rt"))
        self.assertEqual((r.access_token, r.refresh_token), ("a2", "rt2"))
        self.call(v.check, pb.CheckRequest(request=pb.Request(payload=b"{}", client_ip="1.2.3.4")))
        self.assertEqual(seen["check"].client_ip, "1.2.3.4")

    def test_errors(self):
        def raises(exc):
            def fn(*args):
                raise exc
            return fn
        req = pb.VerifyRequest(request=pb.Request(payload=b"{}"))
        v, _ = redirector(verify=raises(hp.InvalidCredentials()))
        self.assertEqual(self.fails(v.verify, req, errors.INVALID_CREDENTIALS), "")
        v, _ = redirector(verify=raises(hp.Misconfigured("the IdP refused the client secret")))
        self.assertEqual(self.fails(v.verify, req, errors.MISCONFIGURED), "the IdP refused the client secret")
        v, _ = redirector(verify=raises(KeyError("x")))
        with self.assertLogs(hp.logger, "ERROR") as logs:
            self.assertEqual(self.fails(v.verify, req, errors.INTERNAL), "plugin raised in Verify: KeyError: 'x'")
        self.assertIn("KeyError", logs.records[0].exc_text or str(logs.records[0].exc_info))
        v, _ = redirector(verify=lambda r: "alice")  # not an Identity
        self.assertEqual(self.fails(v.verify, req, errors.INTERNAL), "verify returned str, want an Identity")
        v, _ = redirector(begin=lambda r: None)
        self.fails(v.begin, pb.BeginRequest(), errors.INTERNAL)
        v, _ = redirector(verify=raises(TimeoutError()))
        self.assertEqual(self.fails(v.verify, req, errors.UNAVAILABLE), "timed out")

    def test_configure(self):
        got = []
        v, _ = redirector(configure=lambda c, h: got.append((c, h.kv)))
        for raw, want in ((b"", {}), (b"null", {}), (b'{"a": 1}', {"a": 1})):
            self.call(v.configure, pb.ConfigureRequest(config=raw))
            self.assertEqual(got[-1][0], want)
        with self.assertRaises(hp.Unavailable):
            got[-1][1].get("k")  # no broker id: no host KV
        self.assertEqual(self.fails(v.configure, pb.ConfigureRequest(config=b"[1,2]"), errors.INVALID_REQUEST),
                         "config: want an object, got an array")

    def test_the_call_sets_deadline_and_request_id_then_clears_them(self):
        seen = {}

        def verify(req):
            seen["deadline"], seen["id"] = hp.log._call.deadline, hp.log._call.request_id
            return hp.Identity(subject="x")
        v, _ = redirector(verify=verify)
        self.call(v.verify, pb.VerifyRequest(request=pb.Request(request_id="r9")), Context(remaining=2.0))
        self.assertIsNotNone(seen["deadline"])
        self.assertEqual(seen["id"], "r9")
        self.assertIsNone(hp.log._call.deadline)
        self.assertEqual(hp.log._call.request_id, "")
        # A call without a deadline: grpcio reports one centuries away.
        for remaining in (None, 1e18):
            self.call(v.verify, pb.VerifyRequest(request=pb.Request()), Context(remaining=remaining))
            self.assertIsNone(seen["deadline"], remaining)

    def test_missing_capabilities_are_not_registered(self):
        v = _serve._Verifier(dict(describe=None, configure=None, verify=None), broker=None)
        self.assertEqual(v.capabilities(), [])
        self.assertIsNotNone(v.handler())

    def test_serve_checks_its_arguments(self):
        with self.assertRaises(ValueError):
            hp.serve(describe=None, configure=None, verify=None, begin=lambda r: None)
        with self.assertRaises(ValueError):
            hp.serve(describe=None, configure=None, verify=None, refresh=lambda r: None)

    def test_health(self):
        r = _serve._health_check(health_pb2.HealthCheckRequest(service="plugin"), Context())
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(Aborted):
            _serve._health_check(health_pb2.HealthCheckRequest(service="other"), Context())


if __name__ == "__main__":
    unittest.main()
