// Drives a running handoff daemon with the official node-appwrite SDK,
// the way an app following Appwrite's "custom token login" guide would.
// The Go test e2e/e2e_test.go starts the daemon and passes its address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { Client, Users, Account, ID, Query, AppwriteException } from 'node-appwrite';

const endpoint = process.env.HANDOFF_ENDPOINT;
const project = process.env.HANDOFF_PROJECT;
const key = process.env.HANDOFF_KEY;
assert.ok(endpoint && project && key, 'HANDOFF_ENDPOINT, HANDOFF_PROJECT and HANDOFF_KEY must be set');

const server = () => new Client().setEndpoint(endpoint).setProject(project).setKey(key);
const users = new Users(server());

async function rejects(promise, code, type) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof AppwriteException, `want AppwriteException, got ${err}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.type, type, err.message);
    return true;
  });
}

test('custom token login with node-appwrite', async () => {
  const email = `e2e-${Date.now()}@example.com`;
  const user = await users.create({ userId: ID.unique(), email, name: 'E2E' });
  assert.match(user.$id, /^[0-9a-f]{20}$/);
  assert.equal(user.email, email);
  assert.equal(user.status, true);
  assert.equal(Object.keys(user.prefs).length, 0); // {} on the wire, never []
  assert.ok(!Array.isArray(user.prefs));
  assert.match(user.$createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$/);

  const got = await users.get({ userId: user.$id });
  assert.equal(got.$id, user.$id);
  const listed = await users.list({ queries: [Query.equal('email', [email])] });
  assert.equal(listed.total, 1);
  assert.equal(listed.users[0].$id, user.$id);

  // Tokens: 6 lowercase hex characters by default, length is configurable,
  // and out-of-range lengths are refused before anything is minted.
  const token = await users.createToken({ userId: user.$id });
  assert.match(token.secret, /^[0-9a-f]{6}$/);
  assert.equal(token.userId, user.$id);
  assert.equal(token.phrase, '');
  const long = await users.createToken({ userId: user.$id, length: 12 });
  assert.match(long.secret, /^[0-9a-f]{12}$/);
  await rejects(users.createToken({ userId: user.$id, length: 3 }), 400, 'general_argument_invalid');
  await rejects(users.createToken({ userId: 'nobody', expire: 900 }), 404, 'user_not_found');

  // Exchange through a key-only client: the SSR pattern, which gets the
  // session credential back in `secret`.
  const account = new Account(server());
  const session = await account.createSession({ userId: user.$id, secret: token.secret });
  assert.equal(session.userId, user.$id);
  assert.equal(session.provider, 'token');
  assert.deepEqual([...session.factors], ['token']);
  assert.equal(session.current, true);
  assert.ok(session.secret.length > 0, 'a key caller sees the session secret');

  // A secret is good once.
  await rejects(account.createSession({ userId: user.$id, secret: token.secret }), 401, 'user_invalid_token');
  await rejects(account.createSession({ userId: user.$id, secret: 'ffffff' }), 401, 'user_invalid_token');

  // The session authenticates the account API.
  const client = new Client().setEndpoint(endpoint).setProject(project).setSession(session.secret);
  const me = new Account(client);
  const acct = await me.get();
  assert.equal(acct.$id, user.$id);
  assert.equal(acct.email, email);

  const sessions = await me.listSessions();
  assert.equal(sessions.total, 1);
  assert.equal(sessions.sessions[0].$id, session.$id);
  assert.equal(sessions.sessions[0].current, true);
  assert.equal(sessions.sessions[0].secret, '');
  const current = await me.getSession({ sessionId: 'current' });
  assert.equal(current.$id, session.$id);

  // A JWT works on its own and verifies against the published JWKS.
  const { jwt } = await me.createJWT();
  const jwtClient = new Client().setEndpoint(endpoint).setProject(project).setJWT(jwt);
  assert.equal((await new Account(jwtClient).get()).$id, user.$id);
  const jwks = await (await fetch(endpoint.replace(/\/v1$/, '') + '/.well-known/jwks.json')).json();
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  assert.equal(header.alg, 'EdDSA');
  assert.equal(payload.userId, user.$id);
  assert.equal(payload.sessionId, session.$id);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, 'the signing key is in the JWKS');
  assert.ok(verify(null, Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url')));

  // Logging out kills the session, and the JWT with it.
  await me.deleteSession({ sessionId: 'current' });
  await rejects(me.get(), 401, 'general_unauthorized_scope');
  await rejects(new Account(jwtClient).get(), 401, 'general_unauthorized_scope');

  await users.delete({ userId: user.$id });
  await rejects(users.get({ userId: user.$id }), 404, 'user_not_found');
});

test('a key without the scope is refused', async () => {
  const guest = new Users(new Client().setEndpoint(endpoint).setProject(project).setKey('standard_nope'));
  await rejects(guest.list(), 401, 'general_unauthorized_scope');
});
