#!/usr/bin/env node
// totp is a handoff verifier plugin in Node.js: time-based one-time
// passwords (RFC 6238: 6 digits, 30 s steps, HMAC-SHA-1), with the same
// behaviour and config as the Go example in examples/plugin. See README.md.
//
// handoff runs a verified copy of this file from a private directory of
// its own, where no node_modules is: the SDK is found with require's
// resolution, which also searches NODE_PATH (the plugin's config sets it
// to this folder's node_modules), and imported from where it was found.
// Keep the verifier's code in this file: it is the file the sha256 pins.
import crypto from 'node:crypto';
import { createRequire } from 'node:module';

function sdkPath() {
  try {
    return createRequire(import.meta.url).resolve('handoff-plugin-sdk');
  } catch {
    // An hclog line on stderr: handoff logs it as this provider's error.
    process.stderr.write(`${JSON.stringify({ '@level': 'error', '@message': 'cannot find the package handoff-plugin-sdk: set the plugin\'s env NODE_PATH to the node_modules it is installed in' })}\n`);
    process.exit(1);
  }
}

const {
  serve, decodeConfig, joinErrors, decodeCounter, ConfigError, InvalidRequestError, InvalidCredentialsError,
  NotFoundError, Flow,
} = await import(sdkPath());

// The RFC 6238 parameters every authenticator app defaults to.
const DIGITS = 6;
const PERIOD = 30; // seconds
const SECRET_SIZE = 20; // bytes: 160 bits, the HMAC-SHA-1 block RFC 4226 recommends
const FAIL_WINDOW_MS = 5 * 60 * 1000;

/** hotp is RFC 4226's HOTP with HMAC-SHA-1: TOTP is hotp(secret, unix/30). */
function hotp(secret, counter, digits = DIGITS) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const sum = crypto.createHmac('sha1', secret).update(msg).digest();
  const off = sum[sum.length - 1] & 0x0f;
  const bin = sum.readUInt32BE(off) & 0x7fffffff;
  return String(bin % 10 ** digits).padStart(digits, '0');
}

/** match finds the step within ±skew of now whose code is code, comparing every candidate in constant time. */
function match(secret, code, nowSec, skew) {
  const cur = Math.floor(nowSec / PERIOD);
  let found = false;
  let step = 0;
  for (let d = -skew; d <= skew; d++) {
    if (crypto.timingSafeEqual(Buffer.from(hotp(secret, cur + d)), Buffer.from(code))) {
      found = true;
      step = cur + d;
    }
  }
  return found ? step : null;
}

const base32Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** base32 encodes without padding, as authenticator apps read secrets. */
function base32(buf) {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** readPayload decodes a JSON object payload; unknown fields are ignored. */
function readPayload(raw) {
  const text = Buffer.from(raw ?? '').toString('utf8').trim();
  if (!text.startsWith('{')) throw new InvalidRequestError('payload must be a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidRequestError(`payload: ${err.message}`);
  }
}

function checkUserID(id) {
  if (typeof id !== 'string' || id === '' || id.length > 128) {
    throw new InvalidRequestError('userId must be 1 to 128 characters');
  }
}

const secretKey = (user) => `secret/${user}`;
const usedKey = (user, step) => `used/${user}/${step}`;
const failKey = (user) => `attempts/${user}`;

// The one answer to a wrong code, an unknown user, a replayed code and a
// throttled user alike, so the answer tells nothing.
const invalidCode = () => new InvalidCredentialsError('invalid code');

const totp = {
  issuer: '',
  skew: 1,
  maxFailures: 5,
  kv: null,

  describe() {
    return { name: 'totp', version: '1.1.0', flows: [Flow.DIRECT], provesIdentity: true };
  },

  configure(ctx, config, host) {
    const cfg = decodeConfig(config, { issuer: '', skew: 1, max_failures: 0 });
    const errs = [];
    if (!cfg.issuer) errs.push(new ConfigError('issuer', 'is required (the name shown in authenticator apps)'));
    if (!Number.isInteger(cfg.skew) || cfg.skew < 0 || cfg.skew > 2) errs.push(new ConfigError('skew', 'must be 0, 1 or 2'));
    const maxFailures = cfg.max_failures === 0 ? 5 : cfg.max_failures;
    if (!Number.isInteger(maxFailures) || maxFailures < 0) errs.push(new ConfigError('max_failures', 'must be positive'));
    const err = joinErrors(errs);
    if (err) throw err;
    Object.assign(this, { issuer: cfg.issuer, skew: cfg.skew, maxFailures, kv: host.kv });
  },

  // enroll creates (or replaces) the user's secret and returns it once.
  async enroll(ctx, req) {
    const p = readPayload(req.payload);
    checkUserID(req.userId);
    const secret = crypto.randomBytes(SECRET_SIZE);
    await this.kv.put(ctx, secretKey(req.userId), secret);
    const account = typeof p.account === 'string' && p.account ? p.account : req.userId;
    const enc = base32(secret);
    const q = new URLSearchParams({ algorithm: 'SHA1', digits: String(DIGITS), issuer: this.issuer, period: String(PERIOD), secret: enc });
    const label = encodeURI(`${this.issuer}:${account}`);
    return { subject: req.userId, data: { secret: enc, otpauth_url: `otpauth://totp/${label}?${q}` } };
  },

  // verify checks {userId, code}; a code is good once.
  async verify(ctx, req) {
    const p = readPayload(req.payload);
    checkUserID(p.userId);
    if (typeof p.code !== 'string' || !/^[0-9]{6}$/.test(p.code)) {
      throw new InvalidRequestError(`code must be ${DIGITS} digits`);
    }
    await this.reserve(ctx, p.userId);
    let result;
    try {
      result = await this.checkCode(ctx, p);
    } catch (err) {
      await this.unreserve(ctx, p.userId); // no code was wrong: give the attempt back
      throw err;
    }
    if (result === 'wrong') throw invalidCode(); // a wrong code keeps its attempt
    if (result === 'replayed') {
      await this.unreserve(ctx, p.userId);
      throw invalidCode();
    }
    await this.kv.delete(ctx, failKey(p.userId)).catch(() => {}); // the reservation goes with the count
    return { subject: p.userId };
  },

  // checkCode matches the code against the user's secret and records it as used
  // (not "check": that name is the Guard capability's).
  async checkCode(ctx, p) {
    let secret;
    try {
      secret = await this.kv.get(ctx, secretKey(p.userId));
    } catch (err) {
      if (err instanceof NotFoundError) return 'wrong';
      throw err;
    }
    const now = Date.now() / 1000;
    const step = match(secret, p.code, now, this.skew);
    if (step === null) return 'wrong';
    // Put-if-absent: of two requests with one code, one wins.
    const untilMs = (step + this.skew + 1) * PERIOD * 1000;
    const fresh = await this.kv.putIfAbsent(ctx, usedKey(p.userId, step), Buffer.from([1]), untilMs - now * 1000 + 1000);
    if (!fresh) {
      ctx.log.warn('replayed TOTP code refused', { user: p.userId });
      return 'replayed';
    }
    return 'ok';
  },

  // reserve takes one of the user's max_failures attempts before the code
  // is checked, with the KV's atomic add: however many codes arrive at
  // once, at most max_failures are checked per window.
  async reserve(ctx, user) {
    let raw = null;
    try {
      raw = await this.kv.get(ctx, failKey(user));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const n = decodeCounter(raw);
    if (n !== null && n >= this.maxFailures) throw invalidCode();
    if ((await this.kv.add(ctx, failKey(user), 1, FAIL_WINDOW_MS)) > this.maxFailures) throw invalidCode();
  },

  // unreserve gives back an attempt that checked no wrong code, under a
  // deadline of its own: the sign-in's may be what failed.
  async unreserve(ctx, user) {
    try {
      await this.kv.add({ deadline: new Date(Date.now() + 2000) }, failKey(user), -1, FAIL_WINDOW_MS);
    } catch (err) {
      ctx.log.warn('could not give back a TOTP attempt', { user, error: err.message });
    }
  },
};

serve(totp).catch((err) => {
  process.stderr.write(`totp: ${err?.stack ?? err}\n`);
  process.exit(1);
});
