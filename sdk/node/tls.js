// AutoMTLS and the handshake line. The host puts its certificate (PEM) in
// PLUGIN_CLIENT_CERT; the plugin makes a self-signed certificate for
// localhost, serves with it while requiring a client certificate issued by
// the host's alone (the pin), announces its own in the handshake, and dials
// the host's brokered services back with the same identity.
import crypto, { X509Certificate } from 'node:crypto';

// A minimal DER encoder: just what one self-signed certificate needs. It
// saves the plugin loading an X.509 library at every start (a third of a
// Node plugin's start-up time went there).
function der(tag, ...parts) {
  const body = Buffer.concat(parts);
  let len;
  if (body.length < 0x80) {
    len = Buffer.from([body.length]);
  } else {
    const bytes = [];
    for (let n = body.length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...parts) => der(0x30, ...parts);
const set = (...parts) => der(0x31, ...parts);
const utf8 = (s) => der(0x0c, Buffer.from(s, 'utf8'));
const bool = (b) => der(0x01, Buffer.from([b ? 0xff : 0]));
const octets = (b) => der(0x04, b);
const bits = (b, unused = 0) => der(0x03, Buffer.from([unused]), b);
function oid(dotted) {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const enc = [n & 0x7f];
    for (let v = n >>> 7; v > 0; v >>>= 7) enc.unshift(0x80 | (v & 0x7f));
    out.push(...enc);
  }
  return der(0x06, Buffer.from(out));
}
function integer(buf) {
  let b = Buffer.from(buf);
  while (b.length > 1 && b[0] === 0 && !(b[1] & 0x80)) b = b.subarray(1);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return der(0x02, b);
}
function time(d) {
  const iso = d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z'); // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(iso.slice(2))) : der(0x18, Buffer.from(iso));
}
const ext = (id, critical, value) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

const ecdsaWithSHA256 = seq(oid('1.2.840.10045.4.3.2'));

/**
 * makeIdentity returns a fresh self-signed certificate for localhost, the
 * same shape as go-plugin's own (an ECDSA key; a CA; server and client
 * auth; DNS name localhost), valid from 30 s ago for 10 years, and its
 * key: both PEM, and the certificate's DER.
 */
export function makeIdentity(now = new Date()) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serial = crypto.randomBytes(16);
  serial[0] &= 0x7f;
  const name = seq(set(seq(oid('2.5.4.3'), utf8('localhost'))), set(seq(oid('2.5.4.10'), utf8('handoff plugin'))));
  const tbs = seq(
    der(0xa0, integer([2])), // v3
    integer(serial),
    ecdsaWithSHA256,
    name,
    seq(time(new Date(now.getTime() - 30_000)), time(new Date(now.getTime() + 10 * 365 * 24 * 3600_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(
      ext('2.5.29.19', true, seq(bool(true))), // basicConstraints: CA
      // keyUsage: digitalSignature, keyEncipherment, keyCertSign
      ext('2.5.29.15', true, bits(Buffer.from([0xa4]), 2)),
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // server and client auth
      ext('2.5.29.17', false, seq(der(0x82, Buffer.from('localhost')))), // DNS:localhost
    )),
  );
  const cert = seq(tbs, ecdsaWithSHA256, bits(crypto.sign('sha256', tbs, privateKey)));
  return {
    certPem: `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    der: cert,
  };
}

/**
 * hostCertificate checks PLUGIN_CLIENT_CERT: one PEM certificate, which
 * becomes the only root the plugin trusts. It throws on anything else.
 */
export function hostCertificate(pem) {
  if (!pem || !pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new Error('PLUGIN_CLIENT_CERT is not set: the host must run this plugin with AutoMTLS');
  }
  const cert = new X509Certificate(pem); // throws on a malformed certificate
  return { pem: Buffer.from(pem), fingerprint256: cert.fingerprint256 };
}

/** base64NoPad encodes as go-plugin's handshake wants: standard base64, no '='. */
export function base64NoPad(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '');
}

/**
 * handshakeLine is the plugin's first stdout line:
 * CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL|SERVER-CERT.
 */
export function handshakeLine({ core = 1, app, network = 'unix', address, der }) {
  return `${core}|${app}|${network}|${address}|grpc|${der ? base64NoPad(der) : ''}\n`;
}
