// Test helpers: a stand-in for the host. It makes its own identity (as
// go-plugin's host does for AutoMTLS), starts a verifier with serve() as
// the host would see it, and dials the plugin back with mutual TLS.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import grpc from '@grpc/grpc-js';

import { serve } from '../serve.js';
import { makeIdentity } from '../tls.js';
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, proto } from '../wire.js';

export const { v1 } = proto.handoff.verifier;

/** pem turns a certificate's DER into PEM. */
export function pem(der) {
  return `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** socketDir is a fresh directory for unix sockets, removed by the caller's cleanup. */
export function socketDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsdk'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * startPlugin serves verifier as a host would start it and returns the
 * host's identity, the handshake line's fields and a way to dial it.
 */
export async function startPlugin(t, verifier, { host = makeIdentity(), env = {} } = {}) {
  let line = '';
  const exits = [];
  const plugin = await serve(verifier, {
    env: {
      [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE,
      PLUGIN_PROTOCOL_VERSIONS: '1',
      PLUGIN_CLIENT_CERT: host.certPem,
      PLUGIN_UNIX_SOCKET_DIR: socketDir(t),
      ...env,
    },
    handshake: (l) => { line = l; },
    exit: (code) => exits.push(code),
    watchParent: false,
  });
  const fields = line.trimEnd().split('|');
  const pluginPem = pem(Buffer.from(fields[5], 'base64'));
  const clients = [];
  /** dial returns a client of service (a constructor) as the host dials the plugin, or with another identity. */
  const dial = (Service, { identity = host, trust = pluginPem } = {}) => {
    const c = new Service(`unix://${fields[3]}`, grpc.credentials.createSsl(Buffer.from(trust), Buffer.from(identity.keyPem), Buffer.from(identity.certPem)), {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
    });
    clients.push(c);
    return c;
  };
  t.after(async () => {
    for (const c of clients) c.close();
    await plugin.stop();
  });
  return { plugin, line, fields, host, pluginPem, dial, exits };
}

/** unary calls a unary method and resolves with its answer or rejects with its status error. */
export function unary(client, method, req, opts = {}) {
  return new Promise((resolve, reject) => {
    client[method](req, opts, (err, res) => (err ? reject(err) : resolve(res)));
  });
}
