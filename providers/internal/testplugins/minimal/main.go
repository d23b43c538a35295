// Command minimal is a test plugin without optional capabilities.
package main

import (
	"github.com/handoffd/handoff/providers/internal/testverifier"
	"github.com/handoffd/handoff/providers/sdk"
)

func main() { sdk.Serve(testverifier.NewMinimal) }
