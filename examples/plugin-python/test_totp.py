"""Tests of the Python TOTP verifier's logic, the cases of
examples/plugin/totp_test.go, on an in-memory KV with the host KV's
semantics. Run: /usr/bin/python3 -m unittest discover examples/plugin-python
(the protocol side is examples/conformance's TestPythonTOTP)."""

import base64
import json
import logging
import os
import sys
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))

import handoff_plugin as hp  # noqa: E402
import totp  # noqa: E402


class MemoryKV:
    """The host KV's semantics, without TTLs, safe for threads."""

    def __init__(self):
        self.data, self.lock = {}, threading.Lock()

    def get(self, key):
        with self.lock:
            if key not in self.data:
                raise hp.NotFound()
            return self.data[key]

    def put(self, key, value, ttl=0):
        with self.lock:
            self.data[key] = bytes(value)

    def delete(self, key):
        with self.lock:
            self.data.pop(key, None)

    def compare_and_swap(self, key, old, new, ttl=0):
        with self.lock:
            cur = self.data.get(key)
            if (old is None and cur is not None) or (old is not None and cur != old):
                return False
            if new is None:
                self.data.pop(key, None)
            else:
                self.data[key] = new
            return True

    def add(self, key, delta, ttl=0, timeout=None):
        with self.lock:
            n = (hp.decode_counter(self.data[key]) if key in self.data else 0) + delta
            self.data[key] = hp.encode_counter(n)
            return n


class GatedKV(MemoryKV):
    """Holds every read of a secret until open is set, counting the held."""

    def __init__(self):
        super().__init__()
        self.open, self.waiting = threading.Event(), 0

    def get(self, key):
        if key.startswith("secret/"):
            with self.lock:
                self.waiting += 1
            self.open.wait()
        return super().get(key)


T0 = 1_700_000_000


class TOTPTest(unittest.TestCase):
    def setUp(self):
        level = hp.logger.level
        hp.logger.setLevel(logging.CRITICAL)  # the replay warnings are expected here
        self.addCleanup(hp.logger.setLevel, level)
        self.t = float(T0)
        self.matches = 0
        real_match = totp.match

        def counting_match(*args):
            self.matches += 1
            return real_match(*args)
        patches = {"now": lambda: self.t, "match": counting_match}
        for name, value in patches.items():
            old = getattr(totp, name)
            setattr(totp, name, value)
            self.addCleanup(setattr, totp, name, old)

    def verifier(self, kv=None, **config):
        v = totp.TOTP()
        self.kv = kv or MemoryKV()
        v.configure({"issuer": "MyApp", **config}, hp.Host(self.kv))
        return v

    def enroll(self, v, user):
        res = v.enroll(hp.EnrollRequest(user_id=user, payload=b"{}"))
        self.assertEqual(res.subject, user)
        secret = base64.b32decode(res.data["secret"] + "=" * (-len(res.data["secret"]) % 8))
        self.assertEqual(len(secret), totp.SECRET_SIZE)
        return secret

    def code(self, secret, at=None):
        return totp.hotp(secret, int(self.t if at is None else at) // 30)

    def verify(self, v, user, code):
        return v.verify(hp.Request(payload=json.dumps({"userId": user, "code": code}).encode()))

    def test_rfc6238_vectors(self):
        secret = b"12345678901234567890"
        for unix, want in {59: "94287082", 1111111109: "07081804", 1111111111: "14050471",
                           1234567890: "89005924", 2000000000: "69279037", 20000000000: "65353130"}.items():
            self.assertEqual(totp.hotp(secret, unix // 30, 8), want)
            self.assertEqual(totp.hotp(secret, unix // 30), want[2:])

    def test_enroll_and_verify(self):
        v = self.verifier()
        res = v.enroll(hp.EnrollRequest(user_id="u1", payload=b'{"account":"alice@example.com"}'))
        u = urllib.parse.urlsplit(res.data["otpauth_url"])
        self.assertEqual((u.scheme, u.netloc, u.path), ("otpauth", "totp", "/MyApp:alice@example.com"))
        q = dict(urllib.parse.parse_qsl(u.query))
        self.assertEqual(q, {"secret": res.data["secret"], "issuer": "MyApp", "digits": "6", "period": "30",
                             "algorithm": "SHA1"})
        self.assertIn("secret/u1", self.kv.data)

        secret = self.enroll(v, "u2")
        self.assertEqual(self.verify(v, "u2", self.code(secret)).subject, "u2")
        # A replay of the same code, even a step later (still in the window).
        self.t += 30
        with self.assertRaises(hp.InvalidCredentials):
            self.verify(v, "u2", self.code(secret, self.t - 30))
        # The current step's code is still fresh.
        self.verify(v, "u2", self.code(secret))
        # Out of the window.
        with self.assertRaises(hp.InvalidCredentials):
            self.verify(v, "u2", self.code(secret, self.t - 300))
        # An unknown user gets the answer a wrong code gets.
        with self.assertRaises(hp.InvalidCredentials) as cm:
            self.verify(v, "nobody", "123456")
        self.assertEqual(cm.exception.message, "invalid code")
        for bad in (b'{"userId":"u2","code":"12345"}', b'{"userId":"u2","code":"abcdef"}', b'{"code":"123456"}',
                    b'{"userId":"u2","code":123456}', b"[]", b"nope", b'{"userId":"u2","code":"\xd9\xa1\xd9\xa2"}'):
            with self.assertRaises(hp.InvalidRequest, msg=bad):
                v.verify(hp.Request(payload=bad))
        self.assertEqual(len([k for k in self.kv.data if k.startswith("used/u2/")]), 2)

    def test_concurrent_use_of_one_code(self):
        v = self.verifier()
        secret = self.enroll(v, "u1")
        code, wins = self.code(secret), []

        def attempt():
            try:
                self.verify(v, "u1", code)
                wins.append(1)
            except hp.InvalidCredentials:
                pass
        threads = [threading.Thread(target=attempt) for _ in range(10)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(len(wins), 1)

    def test_throttle(self):
        v = self.verifier(max_failures=3)
        secret = self.enroll(v, "u1")
        good = self.code(secret)
        bad = "111111" if good == "000000" else "000000"
        for _ in range(3):
            with self.assertRaises(hp.InvalidCredentials):
                self.verify(v, "u1", bad)
        with self.assertRaises(hp.InvalidCredentials):
            self.verify(v, "u1", good)

    def test_a_right_code_resets_the_count(self):
        v = self.verifier(max_failures=2)
        secret = self.enroll(v, "u1")
        with self.assertRaises(hp.InvalidCredentials):
            self.verify(v, "u1", "111111" if self.code(secret) == "000000" else "000000")
        self.verify(v, "u1", self.code(secret))
        self.assertNotIn("attempts/u1", self.kv.data)

    def test_parallel_codes_then_the_right_one(self):
        guesses, limit = 40, 5
        kv = GatedKV()
        v = self.verifier(kv=kv, max_failures=limit)
        secret = self.enroll(v, "u1")
        good = self.code(secret)
        bad = "111111" if good == "000000" else "000000"
        wins, returned, lock = [], [0], threading.Lock()

        def send(guess):
            try:
                self.verify(v, "u1", guess)
                wins.append(guess)
            except hp.InvalidCredentials:
                pass
            finally:
                with lock:
                    returned[0] += 1

        def settle(n):  # until n are held at the secret or done
            for _ in range(5000):
                with lock:
                    if kv.waiting + returned[0] >= n:
                        return
                threading.Event().wait(0.001)
            self.fail("%d held, %d returned; want %d" % (kv.waiting, returned[0], n))
        threads = [threading.Thread(target=send, args=(bad,)) for _ in range(guesses)]
        for th in threads:
            th.start()
        settle(guesses)
        threads.append(threading.Thread(target=send, args=(good,)))
        threads[-1].start()
        settle(guesses + 1)
        kv.open.set()
        for th in threads:
            th.join()
        self.assertEqual(wins, [])
        self.assertLessEqual(self.matches, limit)

    def test_config(self):
        for config, want in [({}, "config: issuer: is required"),
                             ({"issuer": "x", "skew": 3}, "config: skew: must be 0, 1 or 2"),
                             ({"issuer": "x", "digits": 8}, "config: digits: unknown key"),
                             ({"issuer": 1}, "config: issuer: want a string"),
                             ({"issuer": "x", "max_failures": -1}, "config: max_failures: must be positive")]:
            with self.assertRaises(hp.ConfigError, msg=config) as cm:
                totp.TOTP().configure(config, hp.Host(MemoryKV()))
            self.assertIn(want, str(cm.exception))


if __name__ == "__main__":
    unittest.main()
