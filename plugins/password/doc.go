// Package password is handoff's built-in "password" verifier: usernames and
// passwords, hashed with argon2id (OWASP's minimum by default: 19 MiB, two
// passes, one lane) and kept as PHC strings in the host's KV, so the plugin
// keeps no state of its own and scales with the daemon's store.
//
// Enroll sets a user's username and password (or imports a bcrypt or
// argon2 hash, re-hashed with the current parameters at the next sign-in);
// Verify checks them and returns the lowercased username as the subject.
// Unknown usernames cost the same hash as wrong passwords, failures lock a
// username for a while (each attempt is counted with the host KV's atomic
// Add before its hash is compared, so concurrent guesses cannot overrun
// the limit), and a semaphore bounds how many hashes (each taking
// argon2.memory of RAM) run at once. README.md documents the config,
// payloads and errors.
//
// The package imports only providers/sdk and runs out of process like any
// third-party plugin: the daemon re-executes itself as `handoff plugin
// password`, which serves New.
package password
