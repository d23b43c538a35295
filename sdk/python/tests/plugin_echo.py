"""A plugin for test_process: prints before serve() (which must not break
the handshake), answers Verify with the KV value under the payload's key,
and sleeps on {"sleep": s}."""

import time

import handoff_plugin as hp

print("stray output before serve")

state = {}


def configure(config, host):
    state["kv"] = host.kv


def verify(req):
    body = req.json()
    if "sleep" in body:
        time.sleep(body["sleep"])
    return hp.Identity(subject=state["kv"].get(body["key"]).decode(), claims={"n": 1})


hp.serve(describe=hp.Info(name="echo", version="1.0.0", proves_identity=True), configure=configure, verify=verify,
         enroll=lambda req: hp.EnrollResult(subject=req.user_id, data={"ok": True}))
