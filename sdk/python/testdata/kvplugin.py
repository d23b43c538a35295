#!/usr/bin/python3
"""A test plugin for the SDK's Go test: each verify runs one KV operation
named in its payload, so the test drives the host KV through the real host."""

import base64
import os

import handoff_plugin._tls as tls
from handoff_plugin import Identity, Info, Internal, InvalidRequest, logger, serve

state = {}


def configure(config, host):
    state["kv"] = host.kv
    state["config"] = config


def verify(req):
    p = req.json()
    kv, op, key = state["kv"], p.get("op"), p.get("key", "")
    value = base64.b64decode(p.get("value", ""))
    if op != "ok":
        logger.info("verify", extra={"op": op})
    if op == "ok":
        return Identity(subject="ok")
    if op == "put":
        kv.put(key, value, p.get("ttl", 0))
        return Identity(subject="ok")
    if op == "get":
        return Identity(subject=base64.b64encode(kv.get(key)).decode())
    if op == "cas":
        old = base64.b64decode(p["old"]) if "old" in p else None
        new = base64.b64decode(p["new"]) if "new" in p else None
        return Identity(subject=str(kv.compare_and_swap(key, old, new)))
    if op == "add":
        return Identity(subject=str(kv.add(key, p["delta"], p.get("ttl", 0))))
    if op == "list":
        return Identity(subject=",".join(k for k, _ in kv.list(p.get("prefix", ""))))
    if op == "delete":
        kv.delete(key)
        return Identity(subject="ok")
    if op == "raise":
        raise ZeroDivisionError("boom")
    if op == "internal":
        raise Internal()
    if op == "print":
        print("stray output")
        return Identity(subject="printed")
    raise InvalidRequest("unknown op")


# Modes that break AutoMTLS on purpose: each must make the host refuse the
# plugin (the SDK's TLS is strict on both ends).
mode = os.environ.get("KVPLUGIN_MODE", "")
if mode == "trust-other-host":  # the plugin's server trusts a certificate that is not the host's
    os.environ["PLUGIN_CLIENT_CERT"] = tls.generate().cert_pem.decode()
elif mode == "broker-trusts-other":  # the broker dial trusts a certificate that is not the host's
    other = tls.generate().cert_pem
    make = tls.channel_credentials
    tls.channel_credentials = lambda grpc, ident, host_cert: make(grpc, ident, other)
elif mode == "advertise-other-cert":  # the handshake names a certificate the server does not present
    field = tls.generate().handshake_field()
    tls.Identity.handshake_field = lambda self: field

serve(describe=Info(name="kvtest", version="0.1.0", proves_identity=True), configure=configure, verify=verify)
