// Command noisy is a test plugin that breaks the rule: it prints to stdout
// before sdk.Serve, which corrupts go-plugin's handshake.
package main

import (
	"fmt"

	"github.com/handoffd/handoff/providers/internal/testverifier"
	"github.com/handoffd/handoff/providers/sdk"
)

func main() {
	fmt.Println("starting up!")
	sdk.Serve(testverifier.New)
}
