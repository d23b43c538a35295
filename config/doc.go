// Package config holds handoff's configuration: the typed Config, its
// defaults, how it is loaded and how it is checked.
//
// The lifecycle is fixed. Default returns the built-in values; Load layers a
// YAML or TOML file, then HANDOFF_* environment variables, then command-line
// flags over them (later layers win) and decodes the result strictly, so an
// unknown key anywhere is an error that names its full path, such as
// "tokens.lenght". Only providers[].config stays a raw map, decoded later by
// the provider's own Config. Validate then reports every problem at once,
// each with its key path, as Problems. Effective renders a config as YAML
// with its secrets redacted, for "handoff config check --print".
//
// Environment variables are named after key paths: the HANDOFF_ prefix is
// dropped, the rest is lower-cased and "__" separates levels, so
// HANDOFF_STORE__PATH sets store.path and HANDOFF_TOKENS__MAX_ATTEMPTS sets
// tokens.max_attempts. A number addresses an entry of a list:
// HANDOFF_PROVIDERS__0__DELIVER__WEBHOOK__SECRET sets the webhook secret of
// the first provider. List values such as cors.origins are split on commas.
// Any other HANDOFF_ variable is an unknown key, except HANDOFF_TEST_*,
// which belong to test harnesses and are ignored.
//
// Durations take Go duration strings ("15m", "1h30m") or plain integers,
// which count seconds (tokens.expire: 900).
//
// Secrets may be given inline, by env, or through a *_file key
// (tokens.pepper_file, store.dsn_file, deliver.webhook.secret_file,
// deliver.email.password_file, deliver.sms.auth_token_file,
// deliver.sms.secret_file): Load reads the file, drops its trailing
// newline and puts the content in the sibling key. Relative paths are
// relative to the working directory.
//
// config imports koanf and its parsers only, never another handoff package.
package config
