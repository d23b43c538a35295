import assert from 'node:assert/strict';
import { test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { decodeConfig } from '../config.js';
import {
  Code, ConfigError, ErrInvalidCredentials, ErrNotFound, InternalError, InvalidCredentialsError, InvalidRequestError,
  MisconfiguredError, NotFoundError, PluginError, UnavailableError, codeOf, isCode, joinErrors,
} from '../errors.js';
import { decodeError, encodeError, readDetail } from '../wire.js';

test('the codes are the wire enum\'s and the Go SDK\'s numbers', () => {
  assert.deepEqual({ ...Code }, {
    INVALID_CREDENTIALS: 1, INVALID_REQUEST: 2, UNAVAILABLE: 3, INTERNAL: 4, NOT_FOUND: 5, MISCONFIGURED: 6,
  });
});

test('each code travels with its gRPC code and an ErrorDetail, as wire.Status', () => {
  const cases = [
    [new InvalidCredentialsError('invalid code'), grpc.status.UNAUTHENTICATED, Code.INVALID_CREDENTIALS],
    [new InvalidRequestError('bad'), grpc.status.INVALID_ARGUMENT, Code.INVALID_REQUEST],
    [new UnavailableError('down'), grpc.status.UNAVAILABLE, Code.UNAVAILABLE],
    [new InternalError('bug'), grpc.status.INTERNAL, Code.INTERNAL],
    [new NotFoundError('miss'), grpc.status.NOT_FOUND, Code.NOT_FOUND],
    [new MisconfiguredError('refused'), grpc.status.FAILED_PRECONDITION, Code.MISCONFIGURED],
    [new Error('plain'), grpc.status.INTERNAL, Code.INTERNAL],
  ];
  for (const [err, grpcCode, code] of cases) {
    const st = encodeError(err);
    assert.equal(st.code, grpcCode, err.message);
    assert.equal(st.details, err.message);
    assert.equal(readDetail(st.metadata), code, err.message);
    const back = decodeError(st);
    assert.ok(back instanceof PluginError && back.code === code && back.message === err.message, `round trip of ${err.message}`);
  }
});

test('a bare sentinel travels without a message', () => {
  const st = encodeError(ErrInvalidCredentials);
  assert.equal(st.details, '');
  const back = decodeError(st);
  assert.ok(back instanceof InvalidCredentialsError && back.bare);
  assert.equal(back.message, 'invalid credentials');
});

test('codeOf follows causes and joined errors, and an abort is UNAVAILABLE', () => {
  assert.equal(codeOf(new Error('wrapped', { cause: ErrNotFound })), Code.NOT_FOUND);
  assert.equal(codeOf(joinErrors([new Error('x'), new ConfigError('a', 'unknown key')])), Code.INVALID_REQUEST);
  assert.equal(codeOf(new DOMException('deadline exceeded', 'TimeoutError')), Code.UNAVAILABLE);
  assert.equal(codeOf(new DOMException('cancelled', 'AbortError')), Code.UNAVAILABLE);
  assert.equal(codeOf('a string'), Code.INTERNAL);
  assert.ok(isCode(new ConfigError('issuer', 'is required'), Code.INVALID_REQUEST));
  assert.equal(new ConfigError('smtp.port', 'want number').message, 'config: smtp.port: want number');
});

test('a transport failure from the host is UNAVAILABLE; another status without a detail is INTERNAL', () => {
  const down = decodeError(Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'connection refused', metadata: new grpc.Metadata() }));
  assert.ok(down instanceof UnavailableError);
  assert.match(down.message, /^host services: connection refused/);
  const odd = decodeError(Object.assign(new Error('x'), { code: grpc.status.UNKNOWN, details: '?', metadata: new grpc.Metadata() }));
  assert.ok(odd instanceof InternalError);
});

test('decodeConfig refuses unknown keys and wrong types, naming each key', () => {
  const defaults = { issuer: '', skew: 1, smtp: { host: '', port: 25 }, any: null };
  assert.deepEqual(decodeConfig(null, defaults), defaults);
  assert.deepEqual(decodeConfig({ issuer: 'X', smtp: { port: 587 }, any: [1] }, defaults), { issuer: 'X', skew: 1, smtp: { host: '', port: 587 }, any: [1] });
  try {
    decodeConfig({ isuer: 'X', skew: '1', smtp: { hots: 'h' } }, defaults);
    assert.fail('no error');
  } catch (err) {
    assert.equal(codeOf(err), Code.INVALID_REQUEST);
    assert.deepEqual(err.errors.map((e) => e.message), ['config: isuer: unknown key', 'config: skew: want number, got string', 'config: smtp.hots: unknown key']);
  }
  assert.throws(() => decodeConfig([], defaults), (err) => err instanceof ConfigError && /want an object, got array/.test(err.message));
});
