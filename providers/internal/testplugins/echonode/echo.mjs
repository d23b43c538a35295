#!/usr/bin/env node
// echo.mjs is a test plugin in Node.js, a small twin of the Go echo
// (providers/internal/testverifier): the host's tests and benchmarks run
// it to time and check an external Node plugin. It loads the SDK through
// NODE_PATH (examples/plugin-node/node_modules), as the host runs a
// verified copy of this file from a directory of its own.
import { createRequire } from 'node:module';

const { serve, decodeConfig, errorFor, Flow } = await import(createRequire(import.meta.url).resolve('handoff-plugin-sdk'));

let kv = null;
let greeting = '';

serve({
  describe: () => ({ name: 'echo-node', version: '1.0.0', flows: [Flow.DIRECT], provesIdentity: true }),
  configure(ctx, config, host) {
    ({ greeting } = decodeConfig(config, { greeting: '' }));
    kv = host.kv;
  },
  async verify(ctx, req) {
    const p = JSON.parse(req.payload.toString('utf8') || '{}');
    const id = { subject: p.subject || 'echo', name: greeting, claims: { pid: process.pid, request_id: req.requestId, client_ip: req.clientIp } };
    switch (p.op ?? 'ok') {
      case 'ok':
        return id;
      case 'error':
        throw errorFor(p.code, p.message ?? '');
      case 'bug':
        return null.subject; // a TypeError: reported as a panic
      case 'kvput':
        await kv.put(ctx, p.key, p.value);
        return id;
      case 'kvget':
        id.claims.value = (await kv.get(ctx, p.key)).toString('utf8');
        return id;
      case 'kvadd':
        id.claims.value = await kv.add(ctx, p.key, p.delta ?? 1);
        return id;
      case 'kvonce':
        id.claims.value = await kv.putIfAbsent(ctx, p.key, 'x');
        return id;
      case 'sleep':
        await new Promise((resolve) => setTimeout(resolve, p.millis));
        return id;
      case 'deadline':
        id.claims.deadline_ms = ctx.deadline ? ctx.deadline - Date.now() : -1;
        return id;
      case 'log':
        ctx.log.warn(p.message ?? 'hello from node', { who: 'echo-node' });
        return id;
      case 'stdout':
        console.log('stdout from a node plugin');
        return id;
      default:
        throw errorFor(2, `unknown op ${p.op}`);
    }
  },
});
