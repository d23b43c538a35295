// Package pluginpython holds only this test, which runs the Python TOTP
// example's unit tests (test_totp.py) under go test.
package pluginpython

import (
	"testing"

	"github.com/handoffd/handoff/sdk/python/pythontest"
)

// TestUnittest runs `/usr/bin/python3 -m unittest discover examples/plugin-python`.
func TestUnittest(t *testing.T) { pythontest.Unittest(t, ".") }
