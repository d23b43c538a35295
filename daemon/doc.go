// Package daemon is handoff's HTTP server and lifecycle: the
// Appwrite-compatible users and account API, the provider (verifier) flow,
// request authentication (API key, session, JWT), abuse limits, delivery of
// secrets, health and readiness.
//
// New builds a Daemon from a config.Config; Run serves until its context
// ends and then shuts down gracefully. main.go only wires; tests start the
// same Daemon on a loopback listener.
package daemon
