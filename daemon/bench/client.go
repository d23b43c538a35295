package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// client speaks Appwrite's REST API to one daemon.
type client struct {
	base    string // http://host:port, without a trailing slash
	project string
	key     string // API key for the server calls
	hc      *http.Client
}

func newClient(base, project, key string, conns int) *client {
	tr := &http.Transport{
		Proxy:               nil, // never a proxy: the bench talks to loopback or to the address given
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: strings.TrimRight(base, "/"), project: project, key: key, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// statusError is an answer with an unexpected status.
type statusError struct {
	Step   string
	Status int
	Body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Step, e.Status, strings.TrimSpace(e.Body))
}

// call is one request. withKey sends the API key; session, when set, goes
// in X-Appwrite-Session.
type call struct {
	method  string
	path    string
	body    []byte
	withKey bool
	session string
}

// do sends r and returns the status and body. Only transport failures are
// errors; the caller judges the status.
func (c *client) do(ctx context.Context, r call) (int, []byte, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Appwrite-Project", c.project)
	req.Header.Set("User-Agent", "handoff-bench")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.withKey {
		req.Header.Set("X-Appwrite-Key", c.key)
	}
	if r.session != "" {
		req.Header.Set("X-Appwrite-Session", r.session)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, out, nil
}

// expect sends r and decodes a JSON answer with status want into v (when
// v is not nil).
func (c *client) expect(ctx context.Context, step string, r call, want int, v any) error {
	status, body, err := c.do(ctx, r)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	if status != want {
		return &statusError{Step: step, Status: status, Body: truncate(string(body), 300)}
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("%s: decode answer: %w", step, err)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// mustJSON encodes v, which is always encodable here.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func jsonValid(s string) bool { return json.Valid([]byte(s)) }
