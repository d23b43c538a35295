package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/handoffd/handoff/plugins/oidc/oidctest"
)

// standin is the outside world of the docs' examples, on loopback. Every
// host an example names (an Auth0 tenant, a Keycloak realm, a captcha's
// siteverify, a biometric vendor, an app's webhook) is answered by one
// TLS server with a certificate for that name from a CA of the test's
// own, reached through a CONNECT proxy on loopback. A process started
// with env() (HTTPS_PROXY, SSL_CERT_FILE), and so its plugins, which the
// daemon gives those variables, talk to it instead of the internet: the
// examples run exactly as written.
type standin struct {
	t      *testing.T
	caFile string
	proxy  *httptest.Server
	tls    *httptest.Server
	idpKey *oidctest.Key

	mu    sync.Mutex
	hosts map[string]http.Handler // by host name; the rest is an IdP
	certs map[string]*tls.Certificate
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

func newStandin(t *testing.T) *standin {
	t.Helper()
	s := &standin{t: t, hosts: map[string]http.Handler{}, certs: map[string]*tls.Certificate{}, idpKey: oidctest.NewKey(t)}
	s.newCA()
	s.tls = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.tls.TLS = &tls.Config{GetCertificate: s.certFor}
	s.tls.StartTLS()
	t.Cleanup(s.tls.Close)
	s.proxy = httptest.NewServer(http.HandlerFunc(s.connect))
	t.Cleanup(s.proxy.Close)
	return s
}

// env points a process at the stand-ins. NO_PROXY is cleared: every
// outside host goes through the proxy (loopback never does).
func (s *standin) env() []string {
	return []string{
		"HTTPS_PROXY=" + s.proxy.URL, "https_proxy=" + s.proxy.URL,
		"HTTP_PROXY=" + s.proxy.URL, "http_proxy=" + s.proxy.URL,
		"NO_PROXY=", "no_proxy=", "SSL_CERT_FILE=" + s.caFile,
	}
}

// handle answers host with h instead of the IdP stand-in.
func (s *standin) handle(host string, h http.Handler) {
	s.mu.Lock()
	s.hosts[host] = h
	s.mu.Unlock()
}

// connect is the proxy: a CONNECT to any host:port is piped to the TLS
// stand-in; a plain request (http_proxy) is answered directly.
func (s *standin) connect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		s.serve(w, r)
		return
	}
	up, err := net.Dial("tcp", s.tls.Listener.Addr().String())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		_, _ = io.Copy(up, buf)
		up.Close()
	}()
	go func() {
		_, _ = io.Copy(conn, up)
		conn.Close()
	}()
}

func (s *standin) serve(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	s.mu.Lock()
	h := s.hosts[host]
	s.mu.Unlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	s.idp(w, r, host)
}

// issuer is the IdP stand-in's issuer at a host and discovery path
// prefix, spelled as the real ones spell theirs: an Auth0 tenant's with
// a trailing slash (https://example.eu.auth0.com/), the others without
// (https://accounts.google.com, https://sso.example.com/realms/staff), and
// Entra's common and organizations endpoints a tenant-templated one.
func issuer(host, prefix string) string {
	switch {
	case prefix == "" && strings.HasSuffix(host, ".auth0.com"):
		return "https://" + host + "/"
	case host == "login.microsoftonline.com" && (strings.HasPrefix(prefix, "/common/") || strings.HasPrefix(prefix, "/organizations/")):
		// Entra's multi-tenant discovery names a template, filled per
		// token with its tid.
		return "https://" + host + "/{tenantid}/v2.0"
	}
	return "https://" + host + prefix
}

// idp is an OpenID Provider at any host: discovery under any path and
// the JWKS, enough for the oidc plugin to start and check ID tokens
// signed with idpKey.
func (s *standin) idp(w http.ResponseWriter, r *http.Request, host string) {
	const wellKnown = "/.well-known/openid-configuration"
	switch {
	case strings.HasSuffix(r.URL.Path, wellKnown):
		iss := issuer(host, strings.TrimSuffix(r.URL.Path, wellKnown))
		base := "https://" + host + strings.TrimSuffix(r.URL.Path, wellKnown)
		writeJSONTo(w, map[string]any{
			"issuer":                                iss,
			"authorization_endpoint":                base + "/authorize",
			"token_endpoint":                        base + "/oauth/token",
			"userinfo_endpoint":                     base + "/userinfo",
			"jwks_uri":                              "https://" + host + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"code_challenge_methods_supported":      []string{"S256"},
		})
	case r.URL.Path == "/jwks.json":
		writeJSONTo(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.idpKey.Private.PublicKey, KeyID: s.idpKey.ID, Algorithm: "RS256", Use: "sig"}}})
	default:
		s.t.Errorf("stand-in IdP %s: unexpected %s %s", host, r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

// idToken is an ID token of the IdP stand-in at host for client aud.
func (s *standin) idToken(host, aud, sub, nonce string) string {
	now := time.Now()
	return s.idpKey.Sign(s.t, map[string]any{
		"iss": issuer(host, ""), "aud": aud, "sub": sub, "nonce": nonce,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": sub + "@example.com", "email_verified": true, "name": sub,
	})
}

func writeJSONTo(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// newCA makes the CA every stand-in certificate is signed by, and writes
// it where SSL_CERT_FILE will point.
func (s *standin) newCA() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "handoff e2e stand-in CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		s.t.Fatal(err)
	}
	s.ca, _ = x509.ParseCertificate(der)
	s.caKey = key
	s.caFile = filepath.Join(s.t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// certFor issues (once per name) a certificate for the name the client
// asked for.
func (s *standin) certFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.certs[name]; c != nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	s.certs[name] = c
	return c, nil
}
