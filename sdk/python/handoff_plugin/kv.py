"""The host KV: the provider instance's own key-value space in handoff's
store, served by the host over the one broker connection opened in
Configure. Plugins keep no state of their own; they keep it here."""

import math
import struct
import time

import grpc

from . import errors
from .log import _call
from ._pb import verifier_pb2 as pb

COUNTER_SIZE = 8
"""The length of a counter's value, as get() returns it."""


def encode_counter(n):
    """Returns n as a counter's value: 8 bytes, big-endian two's complement."""
    return struct.pack(">q", n)


def decode_counter(value):
    """Reads a counter's value; None when value is not a counter."""
    if value is None or len(value) != COUNTER_SIZE:
        return None
    return struct.unpack(">q", bytes(value))[0]


def _ttl_ms(ttl):
    """Seconds (float) to the wire's milliseconds; a positive ttl under 1 ms
    is 1 ms, as in the Go SDK."""
    if not ttl or ttl <= 0:
        return 0
    return max(1, math.floor(ttl * 1000))


def _timeout():
    """What is left of the deadline of the call being served (the host's
    per-call deadline crosses to the KV call), or None outside a call."""
    deadline = getattr(_call, "deadline", None)
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


_SERVICE = "/handoff.verifier.v1.HostKV/"


class KV:
    """A key-value space namespaced to one provider instance.

    Every method raises a PluginError on failure: NotFound for a missing
    key (get), InvalidRequest for a bad key or value, Unavailable when the
    host cannot be reached in time. Values are bytes; ttl is in seconds.
    """

    def __init__(self, channel):
        def method(name, req, resp):
            return channel.unary_unary(_SERVICE + name, request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString)

        self._get = method("Get", pb.KVGetRequest, pb.KVGetResponse)
        self._put = method("Put", pb.KVPutRequest, pb.KVPutResponse)
        self._delete = method("Delete", pb.KVDeleteRequest, pb.KVDeleteResponse)
        self._list = method("List", pb.KVListRequest, pb.KVListResponse)
        self._cas = method("CompareAndSwap", pb.KVCompareAndSwapRequest, pb.KVCompareAndSwapResponse)
        self._add = method("Add", pb.KVAddRequest, pb.KVAddResponse)

    @staticmethod
    def _call(fn, req, timeout=None):
        try:
            return fn(req, timeout=_timeout() if timeout is None else timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def get(self, key):
        """Returns the value under key; raises NotFound when there is none."""
        return bytes(self._call(self._get, pb.KVGetRequest(key=key)).value)

    def put(self, key, value, ttl=0):
        """Stores value under key; a ttl above zero (seconds) expires it."""
        self._call(self._put, pb.KVPutRequest(key=key, value=bytes(value), ttl_ms=_ttl_ms(ttl)))

    def delete(self, key):
        """Removes key; an absent key is no error."""
        self._call(self._delete, pb.KVDeleteRequest(key=key))

    def list(self, prefix, after="", limit=0):
        """Returns up to limit (key, value) pairs whose keys start with
        prefix, in key order, after the key after. limit <= 0 is the host's
        default (100)."""
        r = self._call(self._list, pb.KVListRequest(prefix=prefix, after=after, limit=min(max(limit, 0), 1 << 30)))
        return [(e.key, bytes(e.value)) for e in r.entries]

    def compare_and_swap(self, key, old, new, ttl=0):
        """Stores new under key only if the current value is old, and
        returns whether it did. old None means "only if absent"
        (put-if-absent); new None deletes the key. ttl applies to new."""
        req = pb.KVCompareAndSwapRequest(key=key, old=old or b"", old_absent=old is None,
                                         new=new or b"", delete=new is None, ttl_ms=_ttl_ms(ttl))
        return self._call(self._cas, req).swapped

    def add(self, key, delta, ttl=0, timeout=None):
        """Adds delta to the int64 counter under key (absent or expired is 0)
        in one step, atomic across daemon replicas, and returns the new
        value. A ttl above zero expires the counter ttl seconds after this
        add (a sliding window). A key holding another value, or an overflow,
        raises InvalidRequest. Reserve an attempt with it before checking a
        secret, so concurrent guesses cannot all read the same old count.

        Like every method, it is bounded by the deadline of the call being
        served; timeout (seconds) replaces it, e.g. to undo something after
        that deadline has passed."""
        return self._call(self._add, pb.KVAddRequest(key=key, delta=delta, ttl_ms=_ttl_ms(ttl)), timeout).value


class NoKV:
    """The KV of a plugin configured without host services: every call
    raises Unavailable."""

    def __getattr__(self, name):
        def refuse(*args, **kwargs):
            raise errors.Unavailable("the host offers no KV to this plugin")
        return refuse


class Host:
    """What the host offers a plugin, handed to configure()."""

    def __init__(self, kv):
        self.kv = kv
