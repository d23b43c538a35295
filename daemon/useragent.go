package daemon

import "strings"

// userAgent is what a session shows of the client that opened it.
type userAgent struct {
	OS, Client, ClientVersion, ClientType string
}

// parseUserAgent recognises the common browsers, Appwrite's SDKs and curl.
// It is a small table, not a device database: unknown agents leave the
// fields empty, as Appwrite does for agents its parser does not know.
func parseUserAgent(ua string) userAgent {
	var out userAgent
	for _, os := range []struct{ needle, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iOS"}, {"Windows", "Windows"},
		{"Mac OS X", "Mac"}, {"Linux", "GNU/Linux"},
	} {
		if strings.Contains(ua, os.needle) {
			out.OS = os.name
			break
		}
	}
	for _, c := range []struct{ needle, name, typ string }{
		{"AppwriteNodeJSSDK/", "Node.js SDK", "library"}, {"curl/", "curl", "library"},
		{"Edg/", "Microsoft Edge", "browser"}, {"Firefox/", "Firefox", "browser"},
		{"Chrome/", "Chrome", "browser"}, {"Safari/", "Safari", "browser"},
	} {
		if i := strings.Index(ua, c.needle); i >= 0 {
			out.Client, out.ClientType = c.name, c.typ
			v := ua[i+len(c.needle):]
			if j := strings.IndexAny(v, " ;)"); j >= 0 {
				v = v[:j]
			}
			out.ClientVersion = v
			break
		}
	}
	return out
}
