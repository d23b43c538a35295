import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { test } from 'node:test';

import { base64NoPad, handshakeLine, hostCertificate, makeIdentity } from '../tls.js';

test('the handshake line is go-plugin\'s, with the certificate in base64 without padding', () => {
  for (const n of [30, 31, 32, 33]) { // every length mod 3
    const der = Buffer.alloc(n, 0xab);
    const line = handshakeLine({ core: 1, app: 1, address: '/run/h/plugin1', der });
    assert.equal(line.at(-1), '\n');
    const f = line.trimEnd().split('|');
    assert.deepEqual(f.slice(0, 5), ['1', '1', 'unix', '/run/h/plugin1', 'grpc']);
    assert.ok(!f[5].includes('='), `padding in ${f[5]}`);
    assert.deepEqual(Buffer.from(f[5], 'base64'), der);
  }
  assert.equal(base64NoPad(Buffer.from('a')), 'YQ');
});

test('the plugin\'s identity is a self-signed CA for localhost, server and client auth', () => {
  const id = makeIdentity();
  const cert = new X509Certificate(id.certPem);
  assert.deepEqual(Buffer.from(cert.raw), id.der);
  assert.equal(cert.ca, true);
  assert.equal(cert.subjectAltName, 'DNS:localhost');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  assert.ok(cert.verify(cert.publicKey), 'not self-signed');
  assert.ok(cert.checkPrivateKey(createPrivateKey(id.keyPem)));
  assert.ok(new Date(cert.validFrom) <= new Date() && new Date(cert.validTo) > new Date(Date.now() + 365 * 24 * 3600_000));
  assert.notEqual(makeIdentity().certPem, id.certPem, 'two identities are the same');
});

test('PLUGIN_CLIENT_CERT must hold a certificate', () => {
  assert.throws(() => hostCertificate(undefined), /PLUGIN_CLIENT_CERT is not set/);
  assert.throws(() => hostCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'));
  const id = makeIdentity();
  assert.ok(hostCertificate(id.certPem).fingerprint256);
});
