// AutoMTLS and the handshake line. The host puts its certificate (PEM) in
// PLUGIN_CLIENT_CERT; the plugin makes a self-signed certificate for
// localhost, serves with it while requiring a client certificate issued by
// the host's alone (the pin), announces its own in the handshake, and dials
// the host's brokered services back with the same identity.
import { webcrypto, X509Certificate } from 'node:crypto';

import 'reflect-metadata'; // @peculiar/x509 needs the Reflect metadata API
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/**
 * makeIdentity returns a fresh self-signed certificate for localhost, the
 * same shape as go-plugin's own (a CA, server and client auth), valid from
 * 30 s ago for 30 years, and its key, both PEM, plus the certificate's DER.
 */
export async function makeIdentity() {
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const serial = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  serial[0] &= 0x7f; // a positive serial number
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: 'CN=localhost, O=handoff plugin',
    notBefore: new Date(now - 30_000),
    notAfter: new Date(now + 30 * 365 * 24 * 3600_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return {
    certPem: cert.toString('pem') + '\n',
    keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END PRIVATE KEY-----\n`,
    der: Buffer.from(cert.rawData),
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
