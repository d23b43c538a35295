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
// A plugin's README is tested too: READMEProviders returns the providers of
// the README's yaml config examples, with each config section as the JSON
// the plugin decodes, and CheckConfigTable checks the Configuration
// section's table against the config's keys, both ways:
//
//	func TestREADMEConfig(t *testing.T) {
//		for _, p := range providertest.READMEProviders(t, "README.md", "") {
//			c := providertest.Open(t, totp.New)
//			if err := c.Configure(ctx, p.Config); err != nil {
//				t.Errorf("the README's %s example: %v", p.Name, err)
//			}
//		}
//		providertest.CheckConfigTable(t, "README.md", totp.Config{})
//	}
//
// The pair is real gRPC over a unix socket with the plugin's own server
// adapter and the host's client adapter and KV server, so error codes,
// deadlines and host KV calls cross it as they cross a process boundary.
// What it does not cover is the process: the handshake, AutoMTLS, crashes
// and restarts; package providers tests those with real plugin binaries.
//
// A plugin in any language (docs/plugin-protocol.md) runs the same suite
// as a process, started through the host handoff runs, with RunCommand;
// BenchCommand measures its start, Verify round trip and recovery:
//
//	func TestConformance(t *testing.T) {
//		providertest.RunCommand(t, providertest.CommandSuite{
//			Command: []string{"node", "../plugin-node/totp.mjs"},
//			Config:  map[string]any{"issuer": "MyApp"},
//		})
//	}
package providertest
