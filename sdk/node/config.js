// Strict config decoding, as the Go SDK's sdk.DecodeConfig: every unknown
// key is reported, each as a ConfigError naming its dotted path, and so is
// a value of the wrong type.
import { ConfigError, joinErrors } from './errors.js';

function kind(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

const isObject = (v) => kind(v) === 'object';

/**
 * decodeConfig returns defaults overlaid with config (the provider's
 * config section, as Configure got it). Each key of defaults names a
 * config key, and its value is the default and gives the type (a nested
 * object is checked key by key; a null or undefined default takes any
 * type). It throws a ConfigError, or several joined, naming each unknown
 * key and each value of the wrong type. A null or absent config gives the
 * defaults.
 */
export function decodeConfig(config, defaults) {
  if (config == null) return structuredClone(defaults);
  const errs = [];
  const out = walk(config, defaults, '', errs);
  const err = joinErrors(errs);
  if (err) throw err;
  return out;
}

function walk(value, defaults, prefix, errs) {
  if (!isObject(value)) {
    errs.push(new ConfigError(prefix.replace(/\.$/, ''), `want an object, got ${kind(value)}`));
    return structuredClone(defaults);
  }
  const out = structuredClone(defaults);
  for (const [k, v] of Object.entries(value)) {
    const key = prefix + k;
    if (!Object.hasOwn(defaults, k)) {
      errs.push(new ConfigError(key, 'unknown key'));
      continue;
    }
    const d = defaults[k];
    if (d == null || v === null) {
      out[k] = v;
    } else if (isObject(d)) {
      out[k] = walk(v, d, key + '.', errs);
    } else if (kind(v) !== kind(d)) {
      errs.push(new ConfigError(key, `want ${kind(d)}, got ${kind(v)}`));
    } else {
      out[k] = v;
    }
  }
  return out;
}
