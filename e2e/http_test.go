package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// send sends a request as the SDKs do (X-Appwrite-Project, a JSON body
// when there is one, the headers in hdr) with client c and decodes a JSON
// answer (the response's body is read and closed). A transport error is
// returned, not fatal: tests that kill a daemon expect them.
func send(c *http.Client, method, url string, hdr map[string]string, body any) (*http.Response, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-Appwrite-Project", "default")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	out := map[string]any{}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			return resp, out, fmt.Errorf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, raw)
		}
	}
	return resp, out, nil
}

// call sends a request to d as a client (key "") or with an API key, and
// with a session when one is given, and returns the status and the
// decoded JSON answer.
func call(t *testing.T, d *daemon, method, path, key, session string, body any) (int, map[string]any) {
	t.Helper()
	hdr := map[string]string{}
	if key != "" {
		hdr["X-Appwrite-Key"] = key
	}
	if session != "" {
		hdr["X-Appwrite-Session"] = session
	}
	resp, out, err := send(http.DefaultClient, method, d.URL+path, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// want fails the test when an answer's status is not the one wanted.
func want(t *testing.T, what string, status, want int, body map[string]any) {
	t.Helper()
	if status != want {
		t.Fatalf("%s: %d %v, want %d", what, status, body, want)
	}
}
