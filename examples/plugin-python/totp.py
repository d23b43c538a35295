#!/usr/bin/python3 -sB
"""totp: a handoff verifier plugin in Python, the twin of examples/plugin.

Time-based one-time passwords (RFC 6238: 6 digits, 30 s steps,
HMAC-SHA-1), built only on the Python SDK (sdk/python/handoff_plugin),
which must be on PYTHONPATH (see README.md). It keeps each user's secret,
used codes and attempt counts in the host KV and holds no state of its own.

The shebang runs Debian's /usr/bin/python3 (which has python3-grpcio),
never a python3 found on PATH; -s ignores the user's site-packages and -B
writes no bytecode next to the SDK.
"""

import base64
import hashlib
import hmac
import math
import secrets
import struct
import time
import urllib.parse

from handoff_plugin import ConfigError, EnrollResult, Identity, Info, InvalidCredentials, InvalidRequest, \
    NotFound, PluginError, decode_counter, decode_config, logger, serve

# The RFC 6238 parameters every authenticator app defaults to.
DIGITS = 6
PERIOD = 30  # seconds
SECRET_SIZE = 20  # bytes: 160 bits, the HMAC-SHA-1 block RFC 4226 recommends
FAIL_WINDOW = 5 * 60  # seconds

# The config section's keys: (type, default), for decode_config.
CONFIG = {"issuer": (str, ""), "skew": (int, 1), "max_failures": (int, 5)}

now = time.time  # replaced in tests


class _WrongCode(Exception):
    """A wrong code or an unknown user: the attempt stays counted."""


class _Replayed(Exception):
    """A right code used before: the attempt is given back."""


def invalid_code():
    """The one answer to a wrong code, an unknown user, a replayed code and
    a throttled user alike, so the answer tells nothing."""
    return InvalidCredentials("invalid code")


class TOTP:
    """The verifier: configure, enroll and verify, over the host KV."""

    def __init__(self):
        self.issuer, self.skew, self.max_failures, self.kv = "", 1, 5, None

    def describe(self):
        return Info(name="totp", version="1.1.0", flows=["direct"], proves_identity=True)

    def configure(self, config, host):
        cfg = decode_config(config, CONFIG)
        problems = []
        if not cfg["issuer"]:
            problems.append(("issuer", "is required (the name shown in authenticator apps)"))
        if not 0 <= cfg["skew"] <= 2:
            problems.append(("skew", "must be 0, 1 or 2"))
        if cfg["max_failures"] == 0:
            cfg["max_failures"] = 5
        if cfg["max_failures"] < 0:
            problems.append(("max_failures", "must be positive"))
        if problems:
            raise ConfigError(problems)
        self.issuer, self.skew, self.max_failures, self.kv = cfg["issuer"], cfg["skew"], cfg["max_failures"], host.kv

    def enroll(self, req):
        """Creates (or replaces) the user's secret and returns it once, with
        an otpauth:// URL to show as a QR code. The subject is the user id."""
        account = _string(req.json(), "account")
        check_user_id(req.user_id)
        secret = secrets.token_bytes(SECRET_SIZE)
        self.kv.put(secret_key(req.user_id), secret)
        enc = base64.b32encode(secret).decode().rstrip("=")
        query = urllib.parse.urlencode(sorted({
            "secret": enc, "issuer": self.issuer, "algorithm": "SHA1", "digits": str(DIGITS), "period": str(PERIOD),
        }.items()))
        path = urllib.parse.quote("/" + self.issuer + ":" + (account or req.user_id), safe="/:@$&+,;=")
        return EnrollResult(subject=req.user_id, data={"secret": enc, "otpauth_url": "otpauth://totp" + path + "?" + query})

    def verify(self, req):
        """Checks {userId, code} and proves the identity userId. A code is
        good once; attempts are counted before any code is checked."""
        body = req.json()
        user, code = _string(body, "userId"), _string(body, "code")
        check_user_id(user)
        if len(code) != DIGITS or not code.isascii() or not code.isdigit():
            raise InvalidRequest("code must be %d digits" % DIGITS)
        self.reserve(user)
        try:
            ident = self.check(user, code)
        except _WrongCode:
            raise invalid_code() from None
        except _Replayed:
            self.unreserve(user)
            raise invalid_code() from None
        except Exception:
            self.unreserve(user)  # no code was wrong: give the attempt back
            raise
        try:
            self.kv.delete(fail_key(user))  # the reservation goes with the rest of the count
        except PluginError:
            pass
        return ident

    def check(self, user, code):
        """Matches the code against the user's secret and records it as used
        with a put-if-absent: of two requests with one code, one wins."""
        try:
            secret = self.kv.get(secret_key(user))
        except NotFound:
            raise _WrongCode() from None
        except PluginError as e:
            raise e.prefixed("read secret") from None
        t = now()
        step = match(secret, code, t, self.skew)
        if step is None:
            raise _WrongCode()
        until = (step + self.skew + 1) * PERIOD
        try:
            fresh = self.kv.compare_and_swap(used_key(user, step), None, b"\x01", until - t + 1)
        except PluginError as e:
            raise e.prefixed("record used code") from None
        if not fresh:
            logger.warning("replayed TOTP code refused", extra={"user": user})
            raise _Replayed()
        return Identity(subject=user)

    def reserve(self, user):
        """Takes one of the user's max_failures attempts before the code is
        checked (RFC 6238 §5.2), with the host KV's atomic add: however many
        codes arrive at once, at most max_failures are checked per window.
        A user already at the limit is refused before counting, so attempts
        while throttled do not prolong the window."""
        try:
            n = decode_counter(self.kv.get(fail_key(user)))
        except NotFound:
            n = None
        if n is not None and n >= self.max_failures:
            raise invalid_code()
        try:
            n = self.kv.add(fail_key(user), 1, FAIL_WINDOW)
        except PluginError as e:
            raise e.prefixed("count attempt") from None
        if n > self.max_failures:
            raise invalid_code()

    def unreserve(self, user):
        """Gives back an attempt that checked no wrong code, with a deadline
        of its own: the sign-in's may be what failed."""
        try:
            self.kv.add(fail_key(user), -1, FAIL_WINDOW, timeout=2.0)
        except PluginError:
            pass


def hotp(secret, counter, digits=DIGITS):
    """RFC 4226's HOTP with HMAC-SHA-1: TOTP is hotp(secret, unix // 30)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%0*d" % (digits, (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 10 ** digits)


def match(secret, code, t, skew):
    """The step within ±skew of time t whose code is code, or None. Every
    candidate is compared in constant time, without stopping early."""
    cur = math.floor(t) // PERIOD
    found = None
    for d in range(-skew, skew + 1):
        if hmac.compare_digest(hotp(secret, cur + d).encode(), code.encode()):
            found = cur + d
    return found


def check_user_id(user):
    if not user or len(user.encode()) > 128:
        raise InvalidRequest("userId must be 1 to 128 characters")


def _string(body, key):
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("payload: %s must be a string" % key)
    return value


def secret_key(user):
    return "secret/" + user


def used_key(user, step):
    return "used/%s/%d" % (user, step)


def fail_key(user):
    return "attempts/" + user


def main():
    v = TOTP()
    serve(describe=v.describe, configure=v.configure, verify=v.verify, enroll=v.enroll)


if __name__ == "__main__":
    main()
