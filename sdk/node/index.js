// handoff-plugin-sdk: write handoff verifier plugins in Node.js. See
// README.md; docs/plugin-protocol.md in the repository is the protocol
// this package implements.
export { serve, capabilities, Flow, Capability } from './serve.js';
export {
  Code, PluginError, InvalidCredentialsError, InvalidRequestError, UnavailableError, InternalError,
  NotFoundError, MisconfiguredError, ConfigError, ErrInvalidCredentials, ErrInvalidRequest, ErrUnavailable,
  ErrInternal, ErrNotFound, ErrMisconfigured, isCode, codeOf, joinErrors, errorFor,
} from './errors.js';
export { KVClient, COUNTER_SIZE, encodeCounter, decodeCounter } from './kv.js';
export { Logger, logger } from './log.js';
export { decodeConfig } from './config.js';
