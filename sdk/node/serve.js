// serve: a verifier object as a handoff plugin process. It speaks
// go-plugin's gRPC protocol the way the Go SDK's sdk.Serve does: the
// handshake line, strict AutoMTLS, the verifier contract, grpc.health.v1,
// the GRPCBroker the host KV is offered on, GRPCController (a fast
// Shutdown), GRPCStdio, and an exit when the host process is gone.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import grpc from '@grpc/grpc-js';

import { Code, InternalError, InvalidRequestError, PluginError } from './errors.js';
import { Broker, newKVClient, noKV } from './kv.js';
import { logger } from './log.js';
import { hostCertificate, handshakeLine, makeIdentity } from './tls.js';
import { CORE_PROTOCOL_VERSION, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, encodeError, proto, statusError } from './wire.js';

/** Flows a verifier can serve, for describe's flows. */
export const Flow = Object.freeze({ DIRECT: 'direct', REDIRECT: 'redirect' });

/** Capabilities, reported from the optional methods a verifier has. */
export const Capability = Object.freeze({ REDIRECTOR: 'redirector', ENROLLER: 'enroller', GUARD: 'guard', REFRESHER: 'refresher' });

/** capabilities lists the optional abilities of v, as the Go SDK's. */
export function capabilities(v) {
  const caps = [];
  if (typeof v.begin === 'function' && typeof v.complete === 'function') caps.push(Capability.REDIRECTOR);
  if (typeof v.enroll === 'function') caps.push(Capability.ENROLLER);
  if (typeof v.check === 'function') caps.push(Capability.GUARD);
  if (typeof v.refresh === 'function') caps.push(Capability.REFRESHER);
  return caps;
}

// What the plugin writes to stdout after the handshake: go-plugin reads the
// first stdout line as the handshake, so the SDK takes stdout over while the
// host runs it and hands what is written to the host's GRPCStdio stream,
// which the host logs as a warning. A console.log cannot break the handshake.
const stdout = { queue: [], size: 0, sink: null };
const STDOUT_BUFFER = 1 << 20;

function captureStdout() {
  process.stdout.write = (chunk, encoding, cb) => {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8');
    if (stdout.sink) {
      stdout.sink(buf);
    } else if (stdout.size + buf.length <= STDOUT_BUFFER) {
      stdout.queue.push(buf);
      stdout.size += buf.length;
    }
    const done = typeof encoding === 'function' ? encoding : cb;
    if (done) process.nextTick(done);
    return true;
  };
}

if (process.env[MAGIC_COOKIE_KEY] === MAGIC_COOKIE_VALUE) captureStdout();

const notAPlugin = 'This binary is a plugin. These are not meant to be executed directly.\n' +
  'Please execute the program that consumes these plugins, which will\n' +
  'load any plugins automatically\n';

// Errors a JavaScript runtime throws for a bug, which the SDK reports as
// the Go SDK reports a panic.
const bugs = [TypeError, ReferenceError, RangeError, SyntaxError];

/**
 * callContext is what every verifier method gets first: the host's
 * deadline (a Date, or undefined), an AbortSignal that fires when the host
 * gives up or the deadline passes, the request id, and a logger that adds
 * it. Pass ctx on to every KV call: its deadline crosses to the host.
 */
function callContext(call, requestId) {
  const d = call.getDeadline?.();
  const deadline = d instanceof Date ? d : (Number.isFinite(d) ? new Date(d) : undefined);
  const ac = new AbortController();
  call.on?.('cancelled', () => ac.abort(new DOMException('the host cancelled the call', 'AbortError')));
  let timer;
  if (deadline) {
    timer = setTimeout(() => ac.abort(new DOMException('deadline exceeded', 'TimeoutError')), Math.max(0, deadline - Date.now()));
    timer.unref();
  }
  return {
    ctx: { deadline, signal: ac.signal, requestId: requestId || '', log: requestId ? logger.with({ request_id: requestId }) : logger },
    done: () => clearTimeout(timer),
  };
}

function unimplemented(what) {
  return Object.assign(new Error(what), { code: grpc.status.UNIMPLEMENTED, details: what });
}

/** toJSONBuffer encodes JSON data a method returned; it throws if it is not JSON. */
function toJSONBuffer(data, what) {
  if (data == null) return Buffer.alloc(0);
  if (Buffer.isBuffer(data) || typeof data === 'string') {
    const buf = Buffer.from(data);
    if (buf.length === 0) return buf;
    try {
      JSON.parse(buf.toString('utf8'));
    } catch {
      throw new InternalError(`${what} is not JSON`);
    }
    return buf;
  }
  return Buffer.from(JSON.stringify(data));
}

function unixSeconds(t) {
  if (t == null) return 0;
  if (t instanceof Date) return Math.floor(t.getTime() / 1000);
  return Math.floor(Number(t)) || 0;
}

/** identityToPB is an identity as the wire carries it. */
function identityToPB(id) {
  if (id == null || typeof id !== 'object') throw new InternalError('the verifier returned no identity');
  let claims = Buffer.alloc(0);
  if (id.claims && Object.keys(id.claims).length > 0) {
    try {
      claims = Buffer.from(JSON.stringify(id.claims));
    } catch (err) {
      throw new InternalError(`identity claims are not JSON: ${err.message}`);
    }
  }
  return {
    subject: String(id.subject ?? ''), email: String(id.email ?? ''), emailVerified: !!id.emailVerified,
    phone: String(id.phone ?? ''), name: String(id.name ?? ''), claims,
  };
}

function requestFromPB(r) {
  return { payload: r?.payload ?? Buffer.alloc(0), clientIp: r?.clientIp ?? '', userAgent: r?.userAgent ?? '', requestId: r?.requestId ?? '' };
}

/**
 * verifierService adapts a verifier object to the generated gRPC service.
 * Each method turns what it throws into a coded status; a bug (a
 * TypeError, say) is logged with its stack like a Go panic and comes back
 * as INTERNAL; the plugin keeps serving.
 */
export function verifierService(v, broker, tls) {
  const kv = { id: 0, client: null };

  const handle = (method, requestIdOf, run) => async (call, callback) => {
    const { ctx, done } = callContext(call, requestIdOf(call.request));
    try {
      callback(null, await run(ctx, call.request));
    } catch (err) {
      if (err?.code === grpc.status.UNIMPLEMENTED && !(err instanceof PluginError)) {
        callback(err);
      } else if (!(err instanceof Error) || bugs.some((B) => err instanceof B)) {
        ctx.log.error('plugin panicked', { method, panic: String(err?.message ?? err), stack: err?.stack });
        callback(statusError(Code.INTERNAL, `plugin panicked in ${method}: ${err?.message ?? err}`));
      } else {
        callback(encodeError(err));
      }
    } finally {
      done();
    }
  };
  const none = () => '';
  const ofRequest = (req) => req?.request?.requestId;
  const need = (name, what) => {
    if (typeof v[name] !== 'function') throw unimplemented(`the plugin is not ${what}`);
  };

  return {
    Describe: handle('Describe', none, async (ctx) => {
      const info = (await v.describe(ctx)) ?? {};
      return {
        name: String(info.name ?? ''), version: String(info.version ?? ''), flows: info.flows ?? [],
        provesIdentity: !!info.provesIdentity, capabilities: capabilities(v),
      };
    }),
    Configure: handle('Configure', none, async (ctx, req) => {
      let host = { kv: noKV };
      const id = Number(req.hostBrokerId);
      if (id !== 0) {
        if (kv.id !== id || !kv.client) {
          kv.client?.c.close();
          let addr;
          try {
            addr = await broker.wait(id);
          } catch (err) {
            throw new PluginError(Code.UNAVAILABLE, `dial host services: ${err.message}`);
          }
          kv.id = id;
          kv.client = newKVClient(addr, tls);
        }
        host = { kv: kv.client };
      }
      let config = null;
      if (req.config?.length) {
        try {
          config = JSON.parse(req.config.toString('utf8'));
        } catch (err) {
          throw new InvalidRequestError(`config: not valid JSON: ${err.message}`);
        }
      }
      await v.configure(ctx, config, host);
      return {};
    }),
    Verify: handle('Verify', ofRequest, async (ctx, req) => ({ identity: identityToPB(await v.verify(ctx, requestFromPB(req.request))) })),
    Check: handle('Check', ofRequest, async (ctx, req) => {
      need('check', 'a Guard');
      await v.check(ctx, requestFromPB(req.request));
      return {};
    }),
    Begin: handle('Begin', (req) => req?.requestId, async (ctx, req) => {
      need('begin', 'a Redirector');
      const res = (await v.begin(ctx, { callbackUrl: req.callbackUrl, scopes: req.scopes ?? [], requestId: req.requestId })) ?? {};
      return { authUrl: String(res.authUrl ?? ''), state: Buffer.from(res.state ?? '') };
    }),
    Complete: handle('Complete', none, async (ctx, req) => {
      need('complete', 'a Redirector');
      const query = {};
      for (const q of req.query ?? []) query[q.key] = [...(query[q.key] ?? []), ...q.values];
      const id = await v.complete(ctx, { query, state: req.state, callbackUrl: req.callbackUrl });
      return {
        identity: identityToPB(id), accessToken: String(id.accessToken ?? ''),
        accessTokenExpiry: unixSeconds(id.accessTokenExpiry), refreshToken: String(id.refreshToken ?? ''),
      };
    }),
    Enroll: handle('Enroll', none, async (ctx, req) => {
      need('enroll', 'an Enroller');
      const res = (await v.enroll(ctx, { userId: req.userId, payload: req.payload })) ?? {};
      return { subject: String(res.subject ?? ''), data: toJSONBuffer(res.data, 'Enroll data') };
    }),
    Refresh: handle('Refresh', none, async (ctx, req) => {
      need('refresh', 'a Refresher');
      const res = (await v.refresh(ctx, { refreshToken: req.refreshToken })) ?? {};
      return {
        accessToken: String(res.accessToken ?? ''), accessTokenExpiry: unixSeconds(res.accessTokenExpiry),
        refreshToken: String(res.refreshToken ?? ''),
      };
    }),
  };
}

function checkVerifier(v) {
  for (const m of ['describe', 'configure', 'verify']) {
    if (typeof v?.[m] !== 'function') throw new TypeError(`serve: the verifier has no ${m} method`);
  }
  if ((typeof v.begin === 'function') !== (typeof v.complete === 'function')) {
    throw new TypeError('serve: a redirector has both begin and complete');
  }
}

/**
 * negotiate picks the protocol version: the host lists the ones it speaks
 * in PLUGIN_PROTOCOL_VERSIONS; this SDK speaks PROTOCOL_VERSION.
 */
export function negotiate(list) {
  if (!list) return PROTOCOL_VERSION;
  const offered = list.split(',').map((s) => Number(s.trim()));
  if (!offered.includes(PROTOCOL_VERSION)) {
    throw new Error(`the host speaks plugin protocol versions ${list}; this SDK speaks ${PROTOCOL_VERSION}`);
  }
  return PROTOCOL_VERSION;
}

/**
 * serve runs verifier as a handoff plugin: it prints the handshake and
 * serves until the host stops the plugin, which then exits. It resolves
 * once serving, with {address, der, stop, finished} (for tests). verifier is an object with
 * describe(ctx), configure(ctx, config, host) and verify(ctx, req), and
 * optionally check(ctx, req), begin(ctx, req) with complete(ctx, req),
 * enroll(ctx, req) and refresh(ctx, req).
 *
 * Run by hand (not by handoff), the program says it is a plugin and exits
 * 1. options are for tests: env, handshake (receives the handshake line
 * instead of stdout), exit, and watchParent (default true).
 */
export async function serve(verifier, options = {}) {
  checkVerifier(verifier);
  const env = options.env ?? process.env;
  const exit = options.exit ?? ((code) => process.exit(code));
  if (env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    fs.writeSync(2, notAPlugin);
    return exit(1);
  }
  let app, host;
  try {
    app = negotiate(env.PLUGIN_PROTOCOL_VERSIONS);
    host = hostCertificate(env.PLUGIN_CLIENT_CERT);
  } catch (err) {
    logger.error('plugin cannot start', { error: err.message });
    return exit(1);
  }
  const id = await makeIdentity();
  const tls = { hostPem: host.pem, certPem: id.certPem, keyPem: id.keyPem };
  const broker = new Broker();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 << 20 });

  let stopped;
  const finished = new Promise((resolve) => { stopped = resolve; });
  const stop = () => new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), 100);
    server.tryShutdown(() => { clearTimeout(force); resolve(); });
  }).then(() => stopped());

  const { v1 } = proto.handoff.verifier;
  server.addService(v1.Verifier.service, verifierService(verifier, broker, tls));
  server.addService(proto.grpc.health.v1.Health.service, {
    Check: (call, cb) => {
      const s = call.request.service;
      if (s === '' || s === 'plugin') return cb(null, { status: 'SERVING' });
      return cb(Object.assign(new Error('unknown service'), { code: grpc.status.NOT_FOUND, details: 'unknown service' }));
    },
  });
  server.addService(proto.plugin.GRPCBroker.service, {
    StartStream: (call) => {
      call.on('data', (info) => broker.announce(info));
      call.on('error', () => {});
      call.on('end', () => call.end());
    },
  });
  server.addService(proto.plugin.GRPCController.service, {
    Shutdown: (_call, cb) => {
      cb(null, {});
      setImmediate(() => stop().then(() => (options.exit ? undefined : exit(0))));
    },
  });
  server.addService(proto.plugin.GRPCStdio.service, {
    StreamStdio: (call) => {
      const send = (data) => call.write({ channel: 'STDOUT', data });
      for (const b of stdout.queue) send(b);
      stdout.queue = [];
      stdout.size = 0;
      stdout.sink = send;
      call.on('cancelled', () => { if (stdout.sink === send) stdout.sink = null; });
    },
  });

  const dir = env.PLUGIN_UNIX_SOCKET_DIR || os.tmpdir();
  const address = path.join(dir, `plugin${crypto.randomBytes(6).toString('hex')}`);
  const creds = grpc.ServerCredentials.createSsl(host.pem, [{ private_key: Buffer.from(id.keyPem), cert_chain: Buffer.from(id.certPem) }], true);
  await new Promise((resolve, reject) => server.bindAsync(`unix://${address}`, creds, (err) => (err ? reject(err) : resolve())));

  const line = handshakeLine({ core: CORE_PROTOCOL_VERSION, app, address, der: id.der });
  if (options.handshake) options.handshake(line);
  else fs.writeSync(1, line);

  if (options.watchParent ?? true) {
    const ppid = process.ppid;
    const t = setInterval(() => { if (process.ppid !== ppid) exit(2); }, 500);
    t.unref();
  }
  if (!options.exit) {
    process.on('SIGINT', () => logger.debug('plugin received interrupt; the host stops it'));
    process.on('uncaughtException', (err) => {
      logger.error('plugin crashed', { error: String(err?.message ?? err), stack: err?.stack });
      process.exit(1);
    });
  }
  return { address, der: id.der, stop, finished };
}
