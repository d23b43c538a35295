// The host KV, served by the host over go-plugin's GRPCBroker: the host
// sends ConnInfo{service_id, network, address} on the broker stream, and
// the plugin dials that address (with the same mutual TLS) when Configure
// names the id. One connection per Configure, kept for every call.
import grpc from '@grpc/grpc-js';

import { NotFoundError, UnavailableError } from './errors.js';
import { decodeError, proto } from './wire.js';

/** How long Dial waits for the host to announce a service (go-plugin's 5 s). */
export const BROKER_DIAL_TIMEOUT_MS = 5000;

/**
 * Broker keeps the services the host announced on the GRPCBroker stream
 * and dials them.
 */
export class Broker {
  constructor() {
    /** @type {Map<number, {network: string, address: string}>} */
    this.known = new Map();
    /** @type {Map<number, Array<(info: object) => void>>} */
    this.waiters = new Map();
  }

  /** announce records a ConnInfo the host sent. */
  announce(info) {
    const id = Number(info.serviceId);
    if (info.knock) return; // multiplexing, which handoff never turns on
    this.known.set(id, { network: info.network, address: info.address });
    for (const w of this.waiters.get(id) ?? []) w(this.known.get(id));
    this.waiters.delete(id);
  }

  /** wait returns the address of service id, once the host has sent it. */
  wait(id, timeoutMs = BROKER_DIAL_TIMEOUT_MS) {
    const got = this.known.get(id);
    if (got) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const list = (this.waiters.get(id) ?? []).filter((w) => w !== done);
        this.waiters.set(id, list);
        reject(new Error(`timeout waiting for connection info for service id ${id}`));
      }, timeoutMs);
      const done = (info) => { clearTimeout(t); resolve(info); };
      this.waiters.set(id, [...(this.waiters.get(id) ?? []), done]);
    });
  }
}

/** target is the gRPC target for a ConnInfo's network and address. */
export function target({ network, address }) {
  return network === 'unix' ? `unix://${address}` : address;
}

/**
 * channelCredentials is the plugin's client identity for brokered
 * services: the host's certificate as the only root, the plugin's own
 * certificate and key, and "localhost" as the name to check (go-plugin's
 * certificates are issued to localhost).
 */
export function channelCredentials(tls) {
  return grpc.credentials.createSsl(tls.hostPem, Buffer.from(tls.keyPem), Buffer.from(tls.certPem));
}

export const channelOptions = {
  'grpc.ssl_target_name_override': 'localhost',
  'grpc.default_authority': 'localhost',
  'grpc.max_receive_message_length': -1,
};

/** callOptions carries a call's deadline (from its ctx) to the host. */
function callOptions(ctx) {
  const opts = {};
  if (ctx?.deadline) opts.deadline = ctx.deadline;
  return opts;
}

function ttlMs(ttl) {
  const n = Number(ttl ?? 0);
  if (!(n > 0)) return 0;
  return Math.max(1, Math.ceil(n));
}

/** COUNTER_SIZE is the length of a counter's value, as get returns it. */
export const COUNTER_SIZE = 8;

/** encodeCounter returns n as a counter's value (8 bytes, big-endian). */
export function encodeCounter(n) {
  const b = Buffer.alloc(COUNTER_SIZE);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

/** decodeCounter reads a counter's value; null when v is not a counter. */
export function decodeCounter(v) {
  if (!v || v.length !== COUNTER_SIZE) return null;
  return Number(Buffer.from(v).readBigInt64BE());
}

/**
 * KVClient is the provider instance's key-value space in the daemon's
 * store. Every method takes the call's ctx first, so the host's deadline
 * crosses to the host; values are Buffers (a string is stored as UTF-8);
 * ttl is in milliseconds, 0 for none. Errors are PluginErrors: a miss is
 * a NotFoundError, a host that is down an UNAVAILABLE one.
 */
export class KVClient {
  /** @param {object} client a HostKV gRPC client */
  constructor(client) {
    this.c = client;
  }

  call(method, ctx, req) {
    return new Promise((resolve, reject) => {
      this.c[method](req, callOptions(ctx), (err, res) => (err ? reject(decodeError(err)) : resolve(res)));
    });
  }

  /** get returns the value under key, or throws a NotFoundError. */
  async get(ctx, key) {
    return (await this.call('Get', ctx, { key })).value;
  }

  /** put stores value under key; a ttl above zero expires it. */
  async put(ctx, key, value, ttl = 0) {
    await this.call('Put', ctx, { key, value: Buffer.from(value), ttlMs: ttlMs(ttl) });
  }

  /** delete removes key; an absent key is no error. */
  async delete(ctx, key) {
    await this.call('Delete', ctx, { key });
  }

  /**
   * list returns up to limit {key, value} entries whose keys start with
   * prefix, in key order, after the key after; limit 0 is the host's
   * default (100).
   */
  async list(ctx, prefix, after = '', limit = 0) {
    const res = await this.call('List', ctx, { prefix, after, limit: Math.min(Math.max(limit | 0, 0), 1 << 30) });
    return res.entries.map((e) => ({ key: e.key, value: e.value }));
  }

  /**
   * compareAndSwap stores next under key only if the current value is
   * prev, and reports whether it did. A null prev means "only if absent"
   * (put-if-absent); a null next deletes the key. ttl applies to next.
   */
  async compareAndSwap(ctx, key, prev, next, ttl = 0) {
    const res = await this.call('CompareAndSwap', ctx, {
      key,
      old: prev == null ? Buffer.alloc(0) : Buffer.from(prev),
      oldAbsent: prev == null,
      new: next == null ? Buffer.alloc(0) : Buffer.from(next),
      delete: next == null,
      ttlMs: ttlMs(ttl),
    });
    return res.swapped;
  }

  /** putIfAbsent stores value under key unless the key holds one; it reports whether it did. */
  putIfAbsent(ctx, key, value, ttl = 0) {
    return this.compareAndSwap(ctx, key, null, value, ttl);
  }

  /**
   * add adds delta to the int64 counter under key (absent or expired is 0)
   * in one step, atomic across daemon replicas, and returns the new value
   * (a Number: exact up to 2^53). A ttl above zero expires the counter ttl
   * after this add. A key holding something else is an INVALID_REQUEST.
   */
  async add(ctx, key, delta, ttl = 0) {
    return Number((await this.call('Add', ctx, { key, delta: Number(delta), ttlMs: ttlMs(ttl) })).value);
  }

  /**
   * update changes the value under key with change(current) (current is
   * null when absent; return null to delete), retried while another
   * writer got there first, on compareAndSwap. It returns what was stored.
   */
  async update(ctx, key, change, ttl = 0, attempts = 10) {
    for (let i = 0; i < attempts; i++) {
      let cur = null;
      try {
        cur = await this.get(ctx, key);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      const next = await change(cur);
      if (await this.compareAndSwap(ctx, key, cur, next, ttl)) return next;
    }
    throw new UnavailableError(`kv: update of ${key} kept losing to other writers`);
  }
}

/** newKVClient dials a brokered HostKV at addr with the plugin's identity. */
export function newKVClient(addr, tls) {
  const HostKV = proto.handoff.verifier.v1.HostKV;
  return new KVClient(new HostKV(target(addr), channelCredentials(tls), channelOptions));
}

/** noKV is the KV of a plugin configured without host services. */
export const noKV = new Proxy({}, {
  get(_, name) {
    if (name === 'then') return undefined;
    return async () => { throw new UnavailableError('the host offers no KV to this plugin'); };
  },
});
