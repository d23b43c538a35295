import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

import { descriptor } from '../gen.mjs';
import { proto } from '../wire.js';

test('proto/descriptor.json is the protos (npm run gen writes it)', () => {
  assert.equal(fs.readFileSync(new URL('../proto/descriptor.json', import.meta.url), 'utf8'), descriptor());
});

test('the services are the contract\'s and go-plugin\'s, by their wire paths', () => {
  const paths = (C) => Object.values(C.service).map((m) => m.path);
  assert.deepEqual(paths(proto.handoff.verifier.v1.Verifier), ['Describe', 'Configure', 'Verify', 'Check', 'Begin', 'Complete', 'Enroll', 'Refresh'].map((m) => `/handoff.verifier.v1.Verifier/${m}`));
  assert.deepEqual(paths(proto.handoff.verifier.v1.HostKV), ['Get', 'Put', 'Delete', 'List', 'CompareAndSwap', 'Add'].map((m) => `/handoff.verifier.v1.HostKV/${m}`));
  assert.deepEqual(paths(proto.plugin.GRPCBroker), ['/plugin.GRPCBroker/StartStream']);
  assert.deepEqual(paths(proto.plugin.GRPCController), ['/plugin.GRPCController/Shutdown']);
  assert.deepEqual(paths(proto.plugin.GRPCStdio), ['/plugin.GRPCStdio/StreamStdio']);
  assert.deepEqual(paths(proto.grpc.health.v1.Health), ['/grpc.health.v1.Health/Check']);
  const b = proto.plugin.GRPCBroker.service.StartStream;
  assert.ok(b.requestStream && b.responseStream);
  const m = proto.handoff.verifier.v1.HostKV.service.Add;
  const wire = m.requestSerialize({ key: 'k', delta: -2, ttlMs: 1000 });
  assert.deepEqual(m.requestDeserialize(wire), { key: 'k', delta: -2, ttlMs: 1000 });
});
