// Command totp is a handoff verifier plugin: time-based one-time passwords
// (RFC 6238: 6 digits, 30 s steps, HMAC-SHA-1), as a third-party plugin
// built only on providers/sdk. See README.md for how to build, pin and
// configure it, and totp.go for the verifier.
package main

import "github.com/handoffd/handoff/providers/sdk"

func main() { sdk.Serve(New) }
