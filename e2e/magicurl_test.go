package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mailbox is a loopback SMTP server that keeps what it is sent.
type mailbox struct{ msgs chan string }

func (b *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{b}, nil }

type mailSession struct{ b *mailbox }

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *mailSession) Reset()                               {}
func (s *mailSession) Logout() error                        { return nil }
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.b.msgs <- string(b)
	return err
}

// TestMagicURLEmail is the seed's magic-URL login through the real
// daemon: the password plugin proves who the user is, the daemon mails a
// link on the app's allowed prefix (text and HTML parts), and the browser
// that opens it exchanges userId and secret as Appwrite's
// updateMagicURLSession does (PUT /v1/account/sessions/magic-url, no API
// key) and reads GET /v1/account with the session cookie. The verify
// answer never shows the secret.
func TestMagicURLEmail(t *testing.T) {
	box := &mailbox{msgs: make(chan string, 2)}
	srv := smtp.NewServer(box)
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	d := startDaemon(t, fmt.Sprintf(`
redirect:
  allow: [https://app.example.com/auth/]
providers:
  - name: password
    kind: password
    users: {create: false}
    deliver:
      via: email
      email:
        smtp: %s
        tls: none
        from: login@example.com
        link: https://app.example.com/auth/magic
`, ln.Addr()))
	const pw = "correct horse battery staple"
	status, user := call(t, d, "POST", "/v1/users", d.Key, "", map[string]any{"userId": "unique()", "email": "alice@example.com", "name": "Alice"})
	want(t, "create user", status, http.StatusCreated, user)
	userID, _ := user["$id"].(string)
	status, enrolled := call(t, d, "POST", "/v1/users/"+userID+"/providers/password", d.Key, "", map[string]any{"username": "alice", "password": pw})
	want(t, "enroll", status, http.StatusCreated, enrolled)

	status, token := call(t, d, "POST", "/v1/providers/password/verify", "", "", map[string]any{"username": "alice", "password": pw})
	want(t, "verify", status, http.StatusCreated, token)
	if token["secret"] != "" {
		t.Fatalf("the verify answer shows the secret: %v", token)
	}
	var msg string
	select {
	case msg = <-box.msgs:
	case <-time.After(15 * time.Second):
		t.Fatal("no mail")
	}
	if !strings.Contains(msg, "multipart/alternative") || !strings.Contains(msg, "text/html") || !strings.Contains(msg, "text/plain") {
		t.Fatalf("not a text and HTML mail:\n%s", msg)
	}
	// The text part is quoted-printable: undo its soft line breaks.
	plain := strings.ReplaceAll(strings.ReplaceAll(msg, "=\r\n", ""), "=3D", "=")
	link := regexp.MustCompile(`https://app\.example\.com/auth/magic\?[A-Za-z0-9=&%._-]+`).FindString(plain)
	u, err := url.Parse(link)
	if err != nil || link == "" || u.Query().Get("userId") != userID || len(u.Query().Get("secret")) != 64 {
		t.Fatalf("link %q in:\n%s", link, msg)
	}

	// The app's page reads the link and exchanges it, as a browser: no key.
	resp, session, err := send(http.DefaultClient, "PUT", d.URL+"/v1/account/sessions/magic-url", nil,
		map[string]any{"userId": u.Query().Get("userId"), "secret": u.Query().Get("secret")})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("magic-url exchange: %v %v", err, session)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "a_session_default" {
			cookie = c.Name + "=" + c.Value
		}
	}
	resp, account, err := send(http.DefaultClient, "GET", d.URL+"/v1/account", map[string]string{"Cookie": cookie}, nil)
	if err != nil || resp.StatusCode != http.StatusOK || account["$id"] != userID {
		t.Fatalf("account: %v %v", err, account)
	}
	// The link is spent.
	resp, again, _ := send(http.DefaultClient, "PUT", d.URL+"/v1/account/sessions/magic-url", nil,
		map[string]any{"userId": u.Query().Get("userId"), "secret": u.Query().Get("secret")})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a spent link exchanged again: %d %v", resp.StatusCode, again)
	}
}
