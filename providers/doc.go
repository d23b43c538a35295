// Package providers is the host side of handoff's verifier plugins: it
// launches each configured provider's plugin as a separate process over
// hashicorp/go-plugin (gRPC), keeps it alive, and gives the daemon a
// *Provider to call with per-call deadlines.
//
// # Launch
//
// A built-in kind runs Options.Executable with BuiltinArgs(kind), by
// default `plugin <kind>`, whose main calls sdk.Serve with the kind's
// factory; without Executable it runs /proc/self/exe on Linux, the bytes
// of the running daemon even when its file has been replaced since. A
// third-party plugin never runs from External.Path: at its first start the
// file is copied into a directory only the daemon's user can enter
// (<runtime dir>/h<pid>/bin, or the user cache dir when that file system
// is noexec), hashed as it is copied, and the copy runs only when its
// SHA-256 is External.SHA256 (a mismatch refuses the provider and says
// expected and actual). Every restart runs that verified copy (hashed
// again first; a copy that is gone is made and checked again), so a file
// swapped or rewritten at the path, before or after the check, never runs.
// The copies are removed at Close. Both speak gRPC only, with
// AutoMTLS, a 10 s start timeout, and an environment made of the spec's
// Env plus PATH, HOME, TZ, LANG and the CA and proxy variables (nothing
// else of the daemon's environment, which may hold secrets). Every start
// is a fresh plugin.Client and exec.Cmd.
//
// Each plugin process is its own process group (a kill takes its helpers
// too) with Pdeathsig SIGKILL, spawned from one goroutine locked to its OS
// thread for the host's life, since Pdeathsig fires when the spawning
// thread ends; the SDK's parent watchdog is the backstop. Its unix sockets
// live in a directory of its own under Options.RuntimeDir, removed when it
// is reaped; a host killed before it could clean up has its directory
// swept by the next one.
//
// # Supervision
//
// A provider's Health is HealthStarting during its first start, then
// HealthUp or HealthRestarting until Close; a spec the host refuses (an
// invalid name, an unknown kind, a missing or malformed sha256) is
// HealthDown and never started. A provider whose first start fails is
// retried like a crashed one, for ever; Start's error names it unless its
// Spec is Optional, so the daemon can refuse to serve without it. A
// running provider is health-checked; when its process exits, three
// health checks in a row fail, or three calls in a row run past its
// Timeout while none has been answered in time for a whole Timeout (the
// process may be alive but stuck), it is killed and started
// again: the first restart at once, then with exponential backoff and
// jitter (200 ms doubling, capped at 30 s). Two seconds of uptime reset
// the backoff, so a plugin that crashes every few seconds is restarted at
// once each time, while one that dies at start backs off. A restart runs
// Configure again with the same config and the same host KV. While a
// provider is not up every call fails at once with an error matching
// sdk.ErrUnavailable; Status reports the attempts since it was last up
// and the last error. Probe starts a spec once and stops it, for
// `handoff config check`; a failure one key of the provider's config
// causes is a *KeyError naming that key.
//
// # Reload
//
// Stage starts a spec's plugin without giving it a name to serve under;
// Swap then puts staged providers in under their names, takes others out,
// and stops the ones it replaced or took out once their calls under way
// have finished (200 ms, then up to their Timeout); Discard drops staged
// providers Swap did not take. A changed provider is so started and
// checked before its old plugin stops, and a start that fails leaves the
// old one serving. The daemon's SIGHUP reload is built on them.
//
// # Calls
//
// Provider methods run under the spec's Timeout (default 5 s); the
// deadline crosses into the plugin and on into its KV calls. A call that
// runs past it is logged at warn ("plugin call timed out", with the
// timeout and the request id); three in a row, while no call has been
// answered in time for a whole Timeout, restart the plugin (see
// Supervision), so a plugin slow under load that still answers is left
// alone. A call cut short by the caller's own earlier deadline counts for
// neither. A timed-out call, a dead plugin and a cancelled call match
// sdk.ErrUnavailable; a plugin's own errors match the sdk sentinel it
// returned and keep its message; a capability the plugin lacks is
// ErrUnsupported.
//
// # Host services
//
// Each plugin gets Options.KV(provider name) as its KV over one broker
// connection opened at Configure. A KV that also implements Updater (as
// tokenstore.KV does) makes the plugins' CompareAndSwap and Add atomic
// across daemons sharing a store; without it, both are atomic within this
// process. A KV that implements Adder (as tokenstore.KV does) serves Add
// by its own, in one store transaction.
package providers
