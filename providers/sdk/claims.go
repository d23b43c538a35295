package sdk

import (
	"encoding/json"
	"strings"
)

// Readers of the claims an IdP returns as JSON decoded with UseNumber
// (an ID token, a userinfo or user API answer), whose types vary by IdP.

// ClaimString reads a string claim, trimmed; a number (GitHub's and many
// IdPs' ids are numbers) is written out. Anything else is "".
func ClaimString(v any) string {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case json.Number:
		return x.String()
	}
	return ""
}

// ClaimBool reads a boolean claim, also spelled "true" (as some IdPs
// send email_verified). Anything else is false.
func ClaimBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return strings.EqualFold(x, "true")
	}
	return false
}
