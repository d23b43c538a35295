// Package e2e holds end-to-end tests: they build the real handoff binary,
// start it on loopback with a temporary store, and drive it over HTTP, with
// Go and with the official node-appwrite SDK (e2e/node).
package e2e
