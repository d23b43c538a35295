import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Logger, hclogTime, parseLevel } from '../log.js';

test('lines are the hclog JSON the host parses, with a microsecond timestamp', () => {
  const lines = [];
  const log = new Logger({ level: parseLevel('debug'), write: (l) => lines.push(l) }).with({ request_id: 'r1' });
  log.warn('replayed code', { user: 'alice', error: new Error('boom'), '@level': 'error' });
  log.debug('detail');
  log.trace('hidden');
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')));
  const rec = JSON.parse(lines[0]);
  assert.equal(rec['@level'], 'warn');
  assert.equal(rec['@message'], 'replayed code');
  assert.match(rec['@timestamp'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(rec.request_id, 'r1');
  assert.equal(rec.user, 'alice');
  assert.equal(rec.error, 'boom');
});

test('the level comes from HANDOFF_PLUGIN_LOG_LEVEL as the host writes it', () => {
  assert.equal(parseLevel('warn'), 4);
  assert.equal(parseLevel('DEBUG'), -4);
  assert.equal(parseLevel(undefined), 0);
  assert.equal(parseLevel('nonsense'), 0);
  const lines = [];
  const log = new Logger({ level: parseLevel('warn'), write: (l) => lines.push(l) });
  log.info('dropped');
  log.error('kept');
  assert.deepEqual(lines.map((l) => JSON.parse(l)['@message']), ['kept']);
  assert.equal(hclogTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6))), '2026-01-02T03:04:05.006000Z');
});
