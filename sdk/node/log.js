// The plugin's logger. It writes hclog JSON lines to standard error:
// {"@level":"info","@message":"...","@timestamp":"...", attrs...}. The
// host (go-plugin) reads the plugin's stderr, parses each such line and
// re-logs it under the provider's name with its level and attributes; a
// line that is not one is logged as it is at debug level.
import fs from 'node:fs';

import { ENV_LOG_LEVEL } from './wire.js';

const levels = { trace: -8, debug: -4, info: 0, warn: 4, error: 8 };

/**
 * parseLevel reads HANDOFF_PLUGIN_LOG_LEVEL as the Go SDK does (slog's
 * level names, any case); anything else is info.
 */
export function parseLevel(text) {
  const l = String(text ?? '').trim().toLowerCase();
  return l in levels ? levels[l] : levels.info;
}

/**
 * hclogTime formats a date as go-plugin's host parses a line's
 * @timestamp: 2006-01-02T15:04:05.000000Z07:00, microseconds and all (a
 * timestamp it cannot parse makes it drop the line's level).
 */
export function hclogTime(d) {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Logger writes one JSON line per record; with() adds attributes. */
export class Logger {
  /**
   * @param {{level?: number, attrs?: object, write?: (line: string) => void}} [opts]
   */
  constructor(opts = {}) {
    this.level = opts.level ?? parseLevel(process.env[ENV_LOG_LEVEL]);
    this.attrs = opts.attrs ?? {};
    this.write = opts.write ?? ((line) => fs.writeSync(2, line));
  }

  /** with returns a logger that adds attrs to every line. */
  with(attrs) {
    return new Logger({ level: this.level, attrs: { ...this.attrs, ...attrs }, write: this.write });
  }

  log(level, message, attrs = {}) {
    if (levels[level] < this.level) return;
    const rec = { '@level': level, '@message': String(message), '@timestamp': hclogTime(new Date()) };
    for (const [k, v] of Object.entries({ ...this.attrs, ...attrs })) {
      if (k.startsWith('@')) continue;
      rec[k] = v instanceof Error ? v.message : v;
    }
    let line;
    try {
      line = JSON.stringify(rec);
    } catch {
      line = JSON.stringify({ '@level': level, '@message': String(message), '@timestamp': rec['@timestamp'] });
    }
    this.write(line + '\n');
  }

  trace(message, attrs) { this.log('trace', message, attrs); }
  debug(message, attrs) { this.log('debug', message, attrs); }
  info(message, attrs) { this.log('info', message, attrs); }
  warn(message, attrs) { this.log('warn', message, attrs); }
  error(message, attrs) { this.log('error', message, attrs); }
}

/** logger is the plugin's logger; a call's ctx.log adds its request id. */
export const logger = new Logger();
