// Package conformance runs providertest's conformance suite against the
// TOTP example plugins, each as the external command an operator would
// configure, through the host handoff runs (providertest.RunCommand): the
// Go one (examples/plugin) here, and the other languages' next to it. It
// holds only tests.
package conformance
