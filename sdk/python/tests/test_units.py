"""Unit tests of the SDK's pieces that need no plugin process."""

import base64
import json
import logging
import os
import unittest
from unittest import mock

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

import handoff_plugin as hp
from handoff_plugin import _tls, errors, kv, log
from handoff_plugin._pb import rpc_status_pb2, verifier_pb2


class _Aborted(Exception):
    pass


class FakeContext:
    """The part of grpc.ServicerContext that errors.abort uses."""

    def __init__(self):
        self.trailers = ()

    def set_trailing_metadata(self, md):
        self.trailers = md

    def abort(self, code, details):
        self.code, self.details = code, details
        raise _Aborted()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, trailers=()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


class ErrorsTest(unittest.TestCase):
    def test_codes_match_the_wire_enum(self):
        for cls, name in [(hp.InvalidCredentials, "ERROR_CODE_INVALID_CREDENTIALS"),
                          (hp.InvalidRequest, "ERROR_CODE_INVALID_REQUEST"),
                          (hp.Unavailable, "ERROR_CODE_UNAVAILABLE"), (hp.Internal, "ERROR_CODE_INTERNAL"),
                          (hp.NotFound, "ERROR_CODE_NOT_FOUND"), (hp.Misconfigured, "ERROR_CODE_MISCONFIGURED")]:
            self.assertEqual(cls.code, verifier_pb2.ErrorCode.Value(name), cls.__name__)

    def test_abort_carries_code_and_detail_and_decodes_back(self):
        for cls, grpc_code in [(hp.InvalidCredentials, grpc.StatusCode.UNAUTHENTICATED),
                               (hp.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
                               (hp.Unavailable, grpc.StatusCode.UNAVAILABLE),
                               (hp.Internal, grpc.StatusCode.INTERNAL), (hp.NotFound, grpc.StatusCode.NOT_FOUND),
                               (hp.Misconfigured, grpc.StatusCode.FAILED_PRECONDITION)]:
            ctx = FakeContext()
            with self.assertRaises(_Aborted):
                errors.abort(ctx, cls.code, "why")
            self.assertEqual(ctx.code, grpc_code)
            (key, value), = ctx.trailers
            self.assertEqual(key, "grpc-status-details-bin")
            st = rpc_status_pb2.RpcStatus.FromString(value)
            self.assertEqual((st.code, st.message), (grpc_code.value[0], "why"))
            self.assertEqual(st.details[0].type_url, "type.googleapis.com/handoff.verifier.v1.ErrorDetail")
            self.assertEqual(verifier_pb2.ErrorDetail.FromString(st.details[0].value).code, cls.code)
            back = errors.from_rpc_error(FakeRpcError(grpc_code, "why", ctx.trailers))
            self.assertIs(type(back), cls)
            self.assertEqual(back.message, "why")

    def test_a_status_without_detail_is_transport_or_internal(self):
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            e = errors.from_rpc_error(FakeRpcError(code, "gone"))
            self.assertIsInstance(e, hp.Unavailable)
            self.assertEqual(str(e), "host services: gone")
        self.assertIsInstance(errors.from_rpc_error(FakeRpcError(grpc.StatusCode.UNKNOWN, "x")), hp.Internal)
        # A malformed trailer is no detail.
        bad = (("grpc-status-details-bin", b"\xff\xff"),)
        self.assertIsInstance(errors.from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "x", bad)), hp.Internal)

    def test_messages(self):
        self.assertEqual(str(hp.InvalidCredentials()), "invalid credentials")
        self.assertEqual(hp.InvalidCredentials().message, "")
        e = hp.NotFound("no key").prefixed("read secret")
        self.assertIsInstance(e, hp.NotFound)
        self.assertEqual(e.message, "read secret: no key")
        self.assertEqual(hp.Unavailable().prefixed("count").message, "count: unavailable")
        ce = hp.ConfigError([("issuer", "is required"), ("", "not an object")])
        self.assertIsInstance(ce, hp.InvalidRequest)
        self.assertEqual(str(ce), "config: issuer: is required\nconfig: not an object")
        self.assertEqual(hp.ConfigError("a.b", "bad").problems, [("a.b", "bad")])
        self.assertEqual(errors.code_of(TimeoutError()), errors.UNAVAILABLE)
        self.assertEqual(errors.code_of(KeyError()), errors.INTERNAL)


class ConfigTest(unittest.TestCase):
    FIELDS = {"issuer": (str, ""), "skew": (int, 1), "ratio": (float, 0.5), "on": (bool, False)}

    def test_defaults_and_values(self):
        self.assertEqual(hp.decode_config({}, self.FIELDS), {"issuer": "", "skew": 1, "ratio": 0.5, "on": False})
        got = hp.decode_config({"issuer": "X", "skew": 2.0, "ratio": 1, "on": True, "skew2": None} | {}, {
            **self.FIELDS, "skew2": (int, 7)})
        self.assertEqual(got, {"issuer": "X", "skew": 2, "ratio": 1, "on": True, "skew2": 7})

    def test_every_problem_named(self):
        with self.assertRaises(hp.ConfigError) as cm:
            hp.decode_config({"zzz": 1, "aaa": 2, "skew": "1", "on": 1, "issuer": 3, "ratio": True}, self.FIELDS)
        self.assertEqual(cm.exception.problems, [
            ("aaa", "unknown key"), ("zzz", "unknown key"), ("issuer", "want a string, got number"),
            ("skew", "want an integer, got string"), ("ratio", "want a number, got bool"),
            ("on", "want a boolean, got number")])
        with self.assertRaises(hp.ConfigError) as cm:
            hp.decode_config({"skew": 1.5}, self.FIELDS)
        self.assertEqual(cm.exception.problems, [("skew", "want an integer, got number 1.5")])


class KVTest(unittest.TestCase):
    def test_counter_encoding_is_8_bytes_big_endian(self):
        self.assertEqual(hp.encode_counter(1), b"\0\0\0\0\0\0\0\x01")
        self.assertEqual(hp.encode_counter(-1), b"\xff" * 8)
        for n in (0, 5, -5, 2 ** 63 - 1, -2 ** 63):
            self.assertEqual(hp.decode_counter(hp.encode_counter(n)), n)
        self.assertIsNone(hp.decode_counter(b"abc"))
        self.assertIsNone(hp.decode_counter(None))

    def test_ttl_in_milliseconds(self):
        self.assertEqual(kv._ttl_ms(0), 0)
        self.assertEqual(kv._ttl_ms(-3), 0)
        self.assertEqual(kv._ttl_ms(0.0001), 1)  # positive never rounds to "no expiry"
        self.assertEqual(kv._ttl_ms(1.5), 1500)

    def test_no_kv_is_unavailable(self):
        with self.assertRaises(hp.Unavailable):
            kv.NoKV().get("k")

    def test_timeout_follows_the_call(self):
        self.assertIsNone(kv._timeout())
        log._call.deadline = 0.0
        try:
            self.assertEqual(kv._timeout(), 0.0)
        finally:
            log._call.deadline = None


class TLSTest(unittest.TestCase):
    def test_certificate_shape(self):
        ident = _tls.generate()
        cert = x509.load_der_x509_certificate(ident.cert_der)
        self.assertEqual(cert, x509.load_pem_x509_certificate(ident.cert_pem))
        self.assertEqual(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                         .get_values_for_type(x509.DNSName), ["localhost"])
        self.assertTrue(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertEqual(set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
                         {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})

    def test_handshake_field_is_base64_without_padding(self):
        # DER lengths vary with the signature; check enough certificates that
        # some would need padding.
        padded = 0
        for _ in range(12):
            ident = _tls.generate()
            field = ident.handshake_field()
            self.assertNotIn("=", field)
            padded += len(ident.cert_der) % 3 != 0
            self.assertEqual(base64.b64decode(field + "=" * (-len(field) % 4)), ident.cert_der)
        self.assertGreater(padded, 0, "no certificate needed padding; the test proved nothing")


class LogTest(unittest.TestCase):
    def record(self, level, msg, **extra):
        rec = logging.LogRecord("handoff_plugin", level, __file__, 1, msg, (), None)
        for k, v in extra.items():
            setattr(rec, k, v)
        return json.loads(log.HCLogFormatter().format(rec))

    def test_hclog_shape(self):
        out = self.record(logging.WARNING, "replayed", user="alice")
        self.assertEqual(out["@level"], "warn")
        self.assertEqual(out["@message"], "replayed")
        self.assertEqual(out["user"], "alice")
        self.assertRegex(out["@timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")
        self.assertNotIn("request_id", out)
        log._call.request_id = "r-1"
        try:
            self.assertEqual(self.record(logging.DEBUG, "x")["request_id"], "r-1")
        finally:
            log._call.request_id = ""
        self.assertEqual(self.record(logging.ERROR, "x")["@level"], "error")
        self.assertEqual(self.record(logging.INFO, "x")["@level"], "info")

    def test_level_from_env(self):
        self.assertEqual(log.level_from_env("debug"), logging.DEBUG)
        self.assertEqual(log.level_from_env("WARN"), logging.WARNING)
        self.assertEqual(log.level_from_env(""), logging.INFO)
        with mock.patch.dict(os.environ, {log.ENV_LOG_LEVEL: "error"}):
            self.assertEqual(log.level_from_env(), logging.ERROR)


class TypesTest(unittest.TestCase):
    def test_request_json(self):
        self.assertEqual(hp.Request(payload=b' {"a": 1}').json(), {"a": 1})
        for bad in (b"", b"null", b"[1]", b'"x"', b'{"a":', b"garbage\x00\xff"):
            with self.assertRaises(hp.InvalidRequest, msg=bad):
                hp.Request(payload=bad).json()


if __name__ == "__main__":
    unittest.main()
