// Command echo is a test plugin: providers/internal/testverifier's Echo.
package main

import (
	"github.com/handoffd/handoff/providers/internal/testverifier"
	"github.com/handoffd/handoff/providers/sdk"
)

func main() { sdk.Serve(testverifier.New) }
