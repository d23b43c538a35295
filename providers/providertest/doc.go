// Package providertest is the test kit for verifier plugins: a harness
// that runs a verifier in-process behind go-plugin's gRPC pair, with a
// memory KV as the host's, so a plugin author tests without a daemon; and
// the conformance suite every verifier runs, directly and through that
// pair.
//
// A plugin's test:
//
//	func TestTOTP(t *testing.T) {
//		c, kv := providertest.Connect(t, totp.New, map[string]any{"issuer": "MyApp"})
//		res, err := c.Enroll(ctx, sdk.EnrollRequest{UserID: "u1", Payload: []byte(`{}`)})
//		...
//	}
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, providertest.Suite{New: totp.New, Config: map[string]any{"issuer": "MyApp"}})
//	}
//
// The pair is real gRPC over a unix socket with the plugin's own server
// adapter and the host's client adapter and KV server, so error codes,
// deadlines and host KV calls cross it as they cross a process boundary.
// What it does not cover is the process: the handshake, AutoMTLS, crashes
// and restarts; package providers tests those with real plugin binaries.
package providertest
