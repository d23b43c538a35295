// The contract's error codes and the typed errors a plugin throws. Codes,
// not strings, cross the process boundary: each error travels as a gRPC
// status with a matching gRPC code and a handoff.verifier.v1.ErrorDetail
// carrying the code, exactly as the Go SDK (providers/sdk) sends them, so
// the host maps a Node plugin's errors as it maps a Go plugin's.

/**
 * The contract codes. Their numbers are the wire enum's (ErrorCode in
 * verifier.proto) and the Go SDK's sdk.Code; never renumber them.
 */
export const Code = Object.freeze({
  INVALID_CREDENTIALS: 1,
  INVALID_REQUEST: 2,
  UNAVAILABLE: 3,
  INTERNAL: 4,
  NOT_FOUND: 5,
  MISCONFIGURED: 6,
});

const defaultMessage = {
  [Code.INVALID_CREDENTIALS]: 'invalid credentials',
  [Code.INVALID_REQUEST]: 'invalid request',
  [Code.UNAVAILABLE]: 'unavailable',
  [Code.INTERNAL]: 'internal error',
  [Code.NOT_FOUND]: 'not found',
  [Code.MISCONFIGURED]: 'misconfigured',
};

/** The gRPC status code sent with each contract code (providers/internal/wire). */
export const grpcCodeOf = Object.freeze({
  [Code.INVALID_CREDENTIALS]: 16, // UNAUTHENTICATED
  [Code.INVALID_REQUEST]: 3, // INVALID_ARGUMENT
  [Code.UNAVAILABLE]: 14, // UNAVAILABLE
  [Code.INTERNAL]: 13, // INTERNAL
  [Code.NOT_FOUND]: 5, // NOT_FOUND
  [Code.MISCONFIGURED]: 9, // FAILED_PRECONDITION
});

/**
 * PluginError is an error with a contract code. Throw one of its
 * subclasses; the host gets the code and the message. A message-less error
 * travels as the bare code (the host shows the code's default text).
 */
export class PluginError extends Error {
  /**
   * @param {number} code one of Code
   * @param {string} [message]
   * @param {{cause?: unknown}} [options]
   */
  constructor(code, message = '', options = undefined) {
    super(message || defaultMessage[code] || `error code ${code}`, options);
    this.name = new.target.name;
    this.code = code;
    /** bare: no message of its own, as the Go SDK's sentinels. */
    this.bare = !message;
  }
}

/** The payload is well formed but does not prove who it claims (401). */
export class InvalidCredentialsError extends PluginError {
  constructor(message, options) { super(Code.INVALID_CREDENTIALS, message, options); }
}

/** The payload or config cannot be read (400). */
export class InvalidRequestError extends PluginError {
  constructor(message, options) { super(Code.INVALID_REQUEST, message, options); }
}

/** The plugin, or a service it depends on, is down or too slow (503). */
export class UnavailableError extends PluginError {
  constructor(message, options) { super(Code.UNAVAILABLE, message, options); }
}

/** A bug: the host answers a generic 500. Any other thrown value becomes one. */
export class InternalError extends PluginError {
  constructor(message, options) { super(Code.INTERNAL, message, options); }
}

/** The host KV has no value under the key. */
export class NotFoundError extends PluginError {
  constructor(message, options) { super(Code.NOT_FOUND, message, options); }
}

/**
 * A service the plugin depends on refused the plugin's own configuration
 * (an IdP refusing the client credentials). The client gets 503; the
 * operator gets the message, which must never carry a secret.
 */
export class MisconfiguredError extends PluginError {
  constructor(message, options) { super(Code.MISCONFIGURED, message, options); }
}

/**
 * ConfigError is a problem with one key of the provider's config; it is an
 * InvalidRequestError whose message is "config: key: message", as the Go
 * SDK's sdk.ConfigError.
 */
export class ConfigError extends InvalidRequestError {
  /** @param {string} key dotted path ("smtp.port"), or '' for the whole config */
  constructor(key, message) {
    super(key ? `config: ${key}: ${message}` : `config: ${message}`);
    this.key = key;
  }
}

/** The sentinels, message-less errors of each code, as the Go SDK's. */
export const ErrInvalidCredentials = Object.freeze(new InvalidCredentialsError());
export const ErrInvalidRequest = Object.freeze(new InvalidRequestError());
export const ErrUnavailable = Object.freeze(new UnavailableError());
export const ErrInternal = Object.freeze(new InternalError());
export const ErrNotFound = Object.freeze(new NotFoundError());
export const ErrMisconfigured = Object.freeze(new MisconfiguredError());

// The order in which codeOf tries the codes: the Go SDK's sentinels order.
const precedence = [Code.INVALID_CREDENTIALS, Code.INVALID_REQUEST, Code.UNAVAILABLE, Code.INTERNAL, Code.NOT_FOUND, Code.MISCONFIGURED];

/**
 * isCode reports whether err, its causes (err.cause) or the errors it
 * joins (AggregateError) carry code, as Go's errors.Is with a sentinel.
 */
export function isCode(err, code) {
  const seen = new Set();
  const walk = (e) => {
    if (e == null || typeof e !== 'object' || seen.has(e)) return false;
    seen.add(e);
    if (e instanceof PluginError && e.code === code) return true;
    if (e instanceof AggregateError && e.errors.some(walk)) return true;
    return walk(e.cause);
  };
  return walk(err);
}

/**
 * codeOf returns the contract code of err: the first code it carries, in
 * the Go SDK's order; UNAVAILABLE for an aborted or timed-out operation;
 * INTERNAL for anything else.
 */
export function codeOf(err) {
  for (const c of precedence) {
    if (isCode(err, c)) return c;
  }
  if (err && (err.name === 'AbortError' || err.name === 'TimeoutError')) return Code.UNAVAILABLE;
  return Code.INTERNAL;
}

/**
 * joinErrors returns one error for several (errors.Join): an
 * AggregateError whose message is theirs, one per line, and whose code is
 * the first of theirs.
 */
export function joinErrors(errs) {
  const list = errs.filter(Boolean);
  if (list.length === 0) return null;
  if (list.length === 1) return list[0];
  return new AggregateError(list, list.map((e) => e.message).join('\n'));
}

/** The default text of a code, as the Go SDK's Code.String. */
export function codeText(code) {
  return defaultMessage[code] || `error code ${code}`;
}

const classes = {
  [Code.INVALID_CREDENTIALS]: InvalidCredentialsError,
  [Code.INVALID_REQUEST]: InvalidRequestError,
  [Code.UNAVAILABLE]: UnavailableError,
  [Code.INTERNAL]: InternalError,
  [Code.NOT_FOUND]: NotFoundError,
  [Code.MISCONFIGURED]: MisconfiguredError,
};

/** errorFor returns the typed error of a code (a PluginError for an unknown one). */
export function errorFor(code, message, options) {
  const C = classes[code];
  return C ? new C(message, options) : new PluginError(code, message, options);
}
