// What both ends of the plugin channel must agree on: the handshake
// constants, the loaded protos, and the error codec between contract codes
// and gRPC statuses (providers/internal/wire in the Go SDK).
import fs from 'node:fs';

import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';

import { Code, PluginError, codeOf, errorFor, grpcCodeOf } from './errors.js';

/** go-plugin's core protocol version, the handshake's first field. */
export const CORE_PROTOCOL_VERSION = 1;
/** The go-plugin protocol version of verifier.v1. */
export const PROTOCOL_VERSION = 1;
/** The magic cookie: a UX feature that makes a plugin run by hand say so. */
export const MAGIC_COOKIE_KEY = 'HANDOFF_PLUGIN_MAGIC_COOKIE';
export const MAGIC_COOKIE_VALUE = '7d1c0c6f3b5e4a9b8f0e2d4c6a8b1e3f5d7c9a0b2e4f6a8c';
/** The lowest log level the host keeps. */
export const ENV_LOG_LEVEL = 'HANDOFF_PLUGIN_LOG_LEVEL';

// The protos (proto/*.proto), as gen.mjs wrote them in protobufjs's JSON
// form: loading that needs no .proto parser.
const root = protobuf.Root.fromJSON(JSON.parse(fs.readFileSync(new URL('proto/descriptor.json', import.meta.url), 'utf8')));
root.resolveAll();

// How messages become JavaScript objects: camelCase fields, int64 as
// Number, enums by name, bytes as Buffer, absent fields at their default
// (what @grpc/proto-loader calls the same options).
const toObject = { longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

function codec(type) {
  return {
    serialize: (obj) => Buffer.from(type.encode(type.fromObject(obj)).finish()),
    deserialize: (buf) => type.toObject(type.decode(buf), toObject),
  };
}

/** serviceDefinition is a protobufjs service as grpc-js takes it. */
function serviceDefinition(service) {
  const def = {};
  for (const m of service.methodsArray) {
    const req = codec(m.resolvedRequestType);
    const res = codec(m.resolvedResponseType);
    def[m.name] = {
      path: `/${service.fullName.slice(1)}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: req.serialize,
      requestDeserialize: req.deserialize,
      responseSerialize: res.serialize,
      responseDeserialize: res.deserialize,
      originalName: m.name[0].toLowerCase() + m.name.slice(1),
    };
  }
  return def;
}

/**
 * packages turns a namespace into nested objects, each service a client
 * constructor (with .service, its definition), as grpc-js's
 * loadPackageDefinition does.
 */
function packages(ns) {
  const out = {};
  for (const child of ns.nestedArray) {
    if (child instanceof protobuf.Service) {
      out[child.name] = grpc.makeGenericClientConstructor(serviceDefinition(child), child.name);
    } else if (child instanceof protobuf.Namespace && !(child instanceof protobuf.Type)) {
      out[child.name] = packages(child);
    }
  }
  return out;
}

/** The gRPC packages of the protos: proto.handoff.verifier.v1.Verifier, … */
export const proto = packages(root);

const errorDetailURL = 'type.googleapis.com/handoff.verifier.v1.ErrorDetail';
const detailsKey = 'grpc-status-details-bin';

// google.rpc.Status{code=1, message=2, details=3 (Any{type_url=1, value=2})}
// and ErrorDetail{code=1}, written and read field by field: three small
// messages do not need a parsed schema at every start.
function encodeStatus(code, message, detailCode) {
  const detail = protobuf.Writer.create().uint32(8).int32(detailCode).finish();
  const any = protobuf.Writer.create().uint32(10).string(errorDetailURL).uint32(18).bytes(detail).finish();
  const w = protobuf.Writer.create().uint32(8).int32(code);
  if (message) w.uint32(18).string(message);
  return Buffer.from(w.uint32(26).bytes(any).finish());
}

// decodeStatus returns the message and the ErrorDetail code (0: none) of
// a google.rpc.Status.
function decodeStatus(buf) {
  const r = protobuf.Reader.create(buf);
  let message = '';
  let code = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag === 18) {
      message = r.string();
    } else if (tag === 26) {
      const a = protobuf.Reader.create(r.bytes());
      let url = '';
      let value = null;
      while (a.pos < a.len) {
        const t = a.uint32();
        if (t === 10) url = a.string();
        else if (t === 18) value = a.bytes();
        else a.skipType(t & 7);
      }
      if (url === errorDetailURL && value) {
        const d = protobuf.Reader.create(value);
        while (d.pos < d.len) {
          const t = d.uint32();
          if (t === 8) code = d.int32();
          else d.skipType(t & 7);
        }
      }
    } else {
      r.skipType(tag & 7);
    }
  }
  return { message, code };
}

/**
 * statusError builds the error a gRPC handler returns for a contract code
 * and message: the matching gRPC code, the message, and the code as an
 * ErrorDetail in the status details, as wire.Status in Go.
 */
export function statusError(code, message) {
  const grpcCode = grpcCodeOf[code] ?? grpcCodeOf[Code.INTERNAL];
  const metadata = new grpc.Metadata();
  metadata.set(detailsKey, encodeStatus(grpcCode, message, code));
  return Object.assign(new Error(message), { code: grpcCode, details: message, metadata });
}

/**
 * encodeError turns what a plugin method threw into its status error. A
 * bare sentinel travels without a message, as the Go SDK's encode.
 */
export function encodeError(err) {
  const code = codeOf(err);
  const msg = err instanceof PluginError && err.bare ? '' : String(err?.message ?? err);
  return statusError(code, msg);
}

const { status: S } = grpc;

/**
 * decodeError turns a failed call's error (from the host KV) into a
 * PluginError: the contract code the host meant, or UNAVAILABLE for a
 * transport failure or deadline, INTERNAL for anything else.
 */
export function decodeError(err) {
  const raw = err?.metadata?.get?.(detailsKey)?.[0];
  if (raw) {
    try {
      const st = decodeStatus(raw);
      if (st.code) return errorFor(st.code, st.message, { cause: err });
    } catch {
      // not a status we can read: fall through to the gRPC code
    }
  }
  const msg = `host services: ${err?.details ?? err?.message ?? err}`;
  switch (err?.code) {
    case S.UNAVAILABLE:
    case S.DEADLINE_EXCEEDED:
    case S.CANCELLED:
      return errorFor(Code.UNAVAILABLE, msg, { cause: err });
    default:
      return errorFor(Code.INTERNAL, msg, { cause: err });
  }
}

/** readDetail returns the contract code in a status error, or 0 (for tests). */
export function readDetail(metadata) {
  const raw = metadata?.get?.(detailsKey)?.[0];
  return raw ? decodeStatus(raw).code : 0;
}
