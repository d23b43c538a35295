import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { NotFoundError, UnavailableError, codeOf } from '../errors.js';
import { decodeCounter, encodeCounter } from '../kv.js';
import { makeIdentity } from '../tls.js';
import { proto, statusError } from '../wire.js';
import { socketDir, startPlugin, unary, v1 } from './helpers.mjs';

/**
 * fakeKV is the host's side of the KV: a HostKV server in memory, behind
 * the mutual TLS go-plugin's broker uses (its identity; the plugin's
 * certificate the only client it takes). It records every request.
 */
async function fakeKV(t, identity, pluginPem) {
  const data = new Map();
  const calls = [];
  const record = (name, fn) => (call, cb) => {
    calls.push({ name, req: call.request, deadline: call.getDeadline() });
    try {
      cb(null, fn(call.request));
    } catch (err) {
      cb(err);
    }
  };
  const server = new grpc.Server();
  server.addService(proto.handoff.verifier.v1.HostKV.service, {
    Get: record('Get', ({ key }) => {
      if (!data.has(key)) throw statusError(5, 'kv: not found');
      return { value: data.get(key) };
    }),
    Put: record('Put', ({ key, value }) => { data.set(key, value); return {}; }),
    Delete: record('Delete', ({ key }) => { data.delete(key); return {}; }),
    List: record('List', ({ prefix }) => ({ entries: [...data].filter(([k]) => k.startsWith(prefix)).sort().map(([key, value]) => ({ key, value })) })),
    CompareAndSwap: record('CompareAndSwap', (r) => {
      const cur = data.get(r.key);
      if (r.oldAbsent ? cur !== undefined : !(cur && cur.equals(r.old))) return { swapped: false };
      if (r.delete) data.delete(r.key); else data.set(r.key, r.new);
      return { swapped: true };
    }),
    Add: record('Add', ({ key, delta }) => {
      const n = (decodeCounter(data.get(key)) ?? 0) + delta;
      data.set(key, encodeCounter(n));
      return { value: n };
    }),
  });
  const address = path.join(socketDir(t), 'kv.sock');
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(pluginPem), [{ private_key: Buffer.from(identity.keyPem), cert_chain: Buffer.from(identity.certPem) }], true);
  await new Promise((resolve, reject) => server.bindAsync(`unix://${address}`, creds, (err) => (err ? reject(err) : resolve())));
  t.after(() => server.forceShutdown());
  return { address, data, calls };
}

// kvUser keeps the host KV it is configured with and runs the op its
// payload names against it.
function kvUser() {
  const v = {
    kv: null,
    describe: () => ({ name: 'kv', version: '1.0.0', flows: ['direct'] }),
    configure(ctx, config, host) { v.kv = host.kv; },
    async verify(ctx, req) {
      const p = JSON.parse(req.payload.toString());
      const out = await v.ops[p.op](ctx, p);
      return { subject: 's', claims: { out } };
    },
    ops: {
      put: (ctx, p) => v.kv.put(ctx, p.key, p.value, p.ttl).then(() => null),
      get: async (ctx, p) => (await v.kv.get(ctx, p.key)).toString(),
      delete: (ctx, p) => v.kv.delete(ctx, p.key).then(() => null),
      list: async (ctx, p) => (await v.kv.list(ctx, p.prefix)).map((e) => e.key),
      once: (ctx, p) => v.kv.putIfAbsent(ctx, p.key, 'x', 1500.2),
      cas: (ctx, p) => v.kv.compareAndSwap(ctx, p.key, p.old, p.new),
      add: (ctx, p) => v.kv.add(ctx, p.key, p.delta, 300000),
      update: (ctx, p) => v.kv.update(ctx, p.key, (cur) => `${cur ?? ''}+`).then((b) => b.toString()),
      missing: async (ctx, p) => {
        try {
          await v.kv.get(ctx, p.key);
          return 'found';
        } catch (err) {
          return err instanceof NotFoundError ? 'NotFoundError' : err.name;
        }
      },
    },
  };
  return v;
}

async function configured(t, { kvIdentity } = {}) {
  const v = kvUser();
  const p = await startPlugin(t, v);
  const kv = await fakeKV(t, kvIdentity ?? p.host, p.pluginPem);
  const stream = p.dial(proto.plugin.GRPCBroker).StartStream();
  stream.on('error', () => {});
  t.after(() => stream.cancel());
  stream.write({ serviceId: 7, network: 'unix', address: kv.address });
  const verifier = p.dial(v1.Verifier);
  await unary(verifier, 'Configure', { config: Buffer.from('{}'), hostBrokerId: 7 });
  const run = async (payload, opts) => {
    const res = await unary(verifier, 'Verify', { request: { payload: Buffer.from(JSON.stringify(payload)) } }, opts);
    return JSON.parse(res.identity.claims).out;
  };
  return { v, kv, run, verifier };
}

test('the KV client reaches the host KV the broker announced, with every primitive', async (t) => {
  const { kv, run } = await configured(t);
  assert.equal(await run({ op: 'put', key: 'a/1', value: 'v1', ttl: 2000 }), null);
  assert.equal(await run({ op: 'get', key: 'a/1' }), 'v1');
  assert.deepEqual(await run({ op: 'list', prefix: 'a/' }), ['a/1']);
  assert.equal(await run({ op: 'missing', key: 'nope' }), 'NotFoundError');
  assert.equal(await run({ op: 'once', key: 'used/1' }), true);
  assert.equal(await run({ op: 'once', key: 'used/1' }), false);
  assert.equal(await run({ op: 'cas', key: 'a/1', old: 'v1', new: 'v2' }), true);
  assert.equal(await run({ op: 'cas', key: 'a/1', old: 'v1', new: 'v3' }), false);
  assert.equal(await run({ op: 'cas', key: 'a/1', old: 'v2', new: null }), true);
  assert.equal(await run({ op: 'add', key: 'n', delta: 1 }), 1);
  assert.equal(await run({ op: 'add', key: 'n', delta: 4 }), 5);
  assert.equal(await run({ op: 'update', key: 'u' }), '+');
  assert.equal(await run({ op: 'update', key: 'u' }), '++');
  assert.equal(await run({ op: 'delete', key: 'u' }), null);
  assert.equal(kv.data.has('u'), false);

  const req = (name) => kv.calls.filter((c) => c.name === name).map((c) => c.req);
  assert.equal(req('Put')[0].ttlMs, 2000);
  const [first] = req('CompareAndSwap');
  assert.equal(first.oldAbsent, true);
  assert.equal(first.ttlMs, 1501, 'a fractional ttl rounds up');
  const del = req('CompareAndSwap').find((r) => r.delete);
  assert.ok(del && !del.oldAbsent && del.old.toString() === 'v2');
  assert.deepEqual(req('Add').map((r) => [r.delta, r.ttlMs]), [[1, 300000], [4, 300000]]);
});

test('the call\'s deadline crosses to the host', async (t) => {
  const { kv, run } = await configured(t);
  await run({ op: 'put', key: 'k', value: 'v' }, { deadline: new Date(Date.now() + 4000) });
  const { deadline } = kv.calls.at(-1);
  const left = new Date(deadline) - Date.now();
  assert.ok(left > 0 && left <= 4000, `the host saw ${left} ms left`);
});

test('a host KV whose certificate is not the host\'s is refused', async (t) => {
  const { run } = await configured(t, { kvIdentity: makeIdentity() });
  const err = await run({ op: 'get', key: 'k' }, { deadline: new Date(Date.now() + 5000) }).catch((e) => e);
  assert.equal(err.code, grpc.status.UNAVAILABLE, `${err.code}: ${err.details}`);
  assert.match(err.details, /host services/);
});

test('a plugin configured without host services gets UNAVAILABLE from its KV', async (t) => {
  const v = kvUser();
  const { dial } = await startPlugin(t, v);
  await unary(dial(v1.Verifier), 'Configure', { config: Buffer.alloc(0), hostBrokerId: 0 });
  const err = await v.kv.get({}, 'k').catch((e) => e);
  assert.ok(err instanceof UnavailableError);
  assert.equal(codeOf(err), 3);
});

test('counters are 8 bytes big-endian, as the host stores them', () => {
  assert.deepEqual(encodeCounter(-2), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]));
  assert.equal(decodeCounter(encodeCounter(5)), 5);
  assert.equal(decodeCounter(Buffer.from('abc')), null);
  assert.equal(decodeCounter(null), null);
});
