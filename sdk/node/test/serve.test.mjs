import assert from 'node:assert/strict';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { InvalidCredentialsError, ErrInvalidRequest } from '../errors.js';
import { serve } from '../serve.js';
import { makeIdentity } from '../tls.js';
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, proto, readDetail } from '../wire.js';
import { startPlugin, unary, v1 } from './helpers.mjs';

const echo = {
  describe: () => ({ name: 'echo', version: '1.2.3', flows: ['direct'], provesIdentity: true }),
  configure() {},
  async verify(ctx, req) {
    const p = JSON.parse(req.payload.toString());
    if (p.op === 'wrong') throw new InvalidCredentialsError('invalid code');
    if (p.op === 'bare') throw ErrInvalidRequest;
    if (p.op === 'bug') return undefined.subject;
    if (p.op === 'deadline') return { subject: 'd', claims: { left: ctx.deadline ? ctx.deadline - Date.now() : -1 } };
    return { subject: p.user, email: 'a@example.com', claims: { ip: req.clientIp, ua: req.userAgent, rid: req.requestId, log: ctx.requestId } };
  },
  enroll: (ctx, req) => ({ subject: req.userId, data: { secret: 'S' } }),
};

test('the host dials the plugin with mutual TLS and gets the contract, health and coded errors', async (t) => {
  const { dial } = await startPlugin(t, echo);
  const v = dial(v1.Verifier);
  const info = await unary(v, 'Describe', {});
  assert.deepEqual({ ...info }, { name: 'echo', version: '1.2.3', flows: ['direct'], provesIdentity: true, capabilities: ['enroller'] });

  const health = await unary(dial(proto.grpc.health.v1.Health), 'Check', { service: 'plugin' });
  assert.equal(health.status, 'SERVING');

  const req = (p) => ({ request: { payload: Buffer.from(JSON.stringify(p)), clientIp: '192.0.2.1', userAgent: 'ua', requestId: 'r-9' } });
  const ok = await unary(v, 'Verify', req({ user: 'alice' }));
  assert.equal(ok.identity.subject, 'alice');
  assert.deepEqual(JSON.parse(ok.identity.claims), { ip: '192.0.2.1', ua: 'ua', rid: 'r-9', log: 'r-9' });

  const wrong = await unary(v, 'Verify', req({ op: 'wrong' })).catch((e) => e);
  assert.equal(wrong.code, grpc.status.UNAUTHENTICATED);
  assert.equal(wrong.details, 'invalid code');
  assert.equal(readDetail(wrong.metadata), 1);

  const bare = await unary(v, 'Verify', req({ op: 'bare' })).catch((e) => e);
  assert.equal(bare.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(bare.details, '');

  const bug = await unary(v, 'Verify', req({ op: 'bug' })).catch((e) => e);
  assert.equal(bug.code, grpc.status.INTERNAL);
  assert.match(bug.details, /^plugin panicked in Verify: /);
  assert.equal(readDetail(bug.metadata), 4);

  const dl = await unary(v, 'Verify', req({ op: 'deadline' }), { deadline: new Date(Date.now() + 3000) });
  const left = JSON.parse(dl.identity.claims).left;
  assert.ok(left > 0 && left <= 3000, `deadline the plugin saw: ${left} ms`);

  const check = await unary(v, 'Check', req({})).catch((e) => e);
  assert.equal(check.code, grpc.status.UNIMPLEMENTED);
  const begin = await unary(v, 'Begin', {}).catch((e) => e);
  assert.equal(begin.code, grpc.status.UNIMPLEMENTED);

  const enrolled = await unary(v, 'Enroll', { userId: 'u1', payload: Buffer.from('{}') });
  assert.deepEqual({ subject: enrolled.subject, data: JSON.parse(enrolled.data) }, { subject: 'u1', data: { secret: 'S' } });
});

test('a client without the host\'s certificate is refused', async (t) => {
  const { dial, pluginPem } = await startPlugin(t, echo);
  const stranger = makeIdentity();
  const err = await unary(dial(v1.Verifier, { identity: stranger, trust: pluginPem }), 'Describe', {}, { deadline: Date.now() + 3000 }).catch((e) => e);
  assert.ok(err instanceof Error && err.code === grpc.status.UNAVAILABLE, `a stranger got ${err?.code}: ${err?.details}`);
});

test('a plugin that is not the one announced in the handshake is not trusted', async (t) => {
  const { dial } = await startPlugin(t, echo);
  const other = makeIdentity(); // the host pins the certificate of the handshake, not this one
  const err = await unary(dial(v1.Verifier, { trust: other.certPem }), 'Describe', {}, { deadline: Date.now() + 3000 }).catch((e) => e);
  assert.ok(err instanceof Error && err.code === grpc.status.UNAVAILABLE, `got ${err?.code}: ${err?.details}`);
});

test('Shutdown stops the server at once', async (t) => {
  const { dial, plugin } = await startPlugin(t, echo);
  const start = Date.now();
  await unary(dial(proto.plugin.GRPCController), 'Shutdown', {});
  await plugin.finished;
  assert.ok(Date.now() - start < 1000, `took ${Date.now() - start} ms`);
});

test('run by hand, or without the host\'s certificate, the plugin exits 1', async () => {
  const exits = [];
  await serve(echo, { env: {}, exit: (c) => exits.push(c) });
  await serve(echo, { env: { [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE }, exit: (c) => exits.push(c) });
  await serve(echo, { env: { [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: '2,3', PLUGIN_CLIENT_CERT: makeIdentity().certPem }, exit: (c) => exits.push(c) });
  assert.deepEqual(exits, [1, 1, 1]);
  await assert.rejects(serve({ describe() {}, configure() {} }), /no verify method/);
  await assert.rejects(serve({ ...echo, begin() {} }), /both begin and complete/);
});
