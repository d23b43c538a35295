package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// handlerFunc is a route's handler: it gets the resolved caller and
// returns an error for writeError to answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

// routes builds the HTTP handler.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern, scope string, h handlerFunc) {
		mux.Handle(pattern, d.api(scope, h))
	}

	// Users (server side, API key).
	api("POST /v1/users", "users.write", d.createUser)
	api("GET /v1/users", "users.read", d.listUsers)
	api("GET /v1/users/{userId}", "users.read", d.getUser)
	api("DELETE /v1/users/{userId}", "users.write", d.deleteUser)
	api("POST /v1/users/{userId}/tokens", "users.write", d.createToken)
	api("POST /v1/users/{userId}/sessions", "users.write", d.createUserSession)
	api("GET /v1/users/{userId}/sessions", "users.read", d.listUserSessions)
	api("DELETE /v1/users/{userId}/sessions", "users.write", d.deleteUserSessions)
	api("DELETE /v1/users/{userId}/sessions/{sessionId}", "users.write", d.deleteUserSession)

	// Account (client side, session).
	api("POST /v1/account/sessions/token", "sessions.write", d.createSession)
	// Appwrite serves its magic-URL and phone logins (updateMagicURLSession,
	// updatePhoneSession) with the same exchange at these paths.
	api("PUT /v1/account/sessions/magic-url", "sessions.write", d.createSession)
	api("PUT /v1/account/sessions/phone", "sessions.write", d.createSession)
	api("GET /v1/account", "account", d.getAccount)
	api("GET /v1/account/sessions", "account", d.listSessions)
	api("GET /v1/account/sessions/{sessionId}", "account", d.getSession)
	api("DELETE /v1/account/sessions/{sessionId}", "account", d.deleteSession)
	api("PATCH /v1/account/sessions/{sessionId}", "account", d.updateSession)
	api("DELETE /v1/account/sessions", "account", d.deleteSessions)
	api("POST /v1/account/jwts", "account", d.createJWT)
	api("POST /v1/account/jwt", "account", d.createJWT)

	d.providerRoutes(api)

	mux.HandleFunc("GET /healthz", d.healthz)
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.HandleFunc("GET /.well-known/jwks.json", d.jwks)
	mux.Handle("GET /metrics", d.metricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.writeError(w, r, errRouteNotFound)
	})
	return d.middleware(mux)
}

// api wraps a route: resolve the caller, check the scope, run h, answer
// its error.
func (d *Daemon) api(scope string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := d.storeOpen()
		var c *caller
		if err == nil {
			c, err = d.authenticate(r)
		}
		if err == nil {
			err = requireScope(c, scope)
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			d.writeError(w, r, err)
		}
	})
}

// statusWriter remembers the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// middleware adds what every request gets: a body limit, CORS, the
// Origin check of state-changing requests, panic recovery and an access
// log line. The log has the path but never the query string, which may
// carry secrets (OAuth2 codes, delivered tokens).
func (d *Daemon) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r = withRequestID(w, r)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				d.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if sw.status == 0 {
					d.writeError(sw, r, errServer)
				}
			}
			d.metrics.observe(r, sw.status, time.Since(start))
			d.log.LogAttrs(r.Context(), levelFor(sw.status), "request", slog.String("request_id", requestID(r.Context())),
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", sw.status), slog.Duration("took", time.Since(start)))
		}()
		r.Body = http.MaxBytesReader(sw, r.Body, d.cfg.HTTP.MaxBodyBytes)
		if d.cors(sw, r) {
			return
		}
		if err := d.checkOrigin(r); err != nil {
			d.writeError(sw, r, err)
			return
		}
		if ver := header(r, "Response-Format"); ver != "" && newerVersion(ver, AppwriteVersion) {
			sw.Header().Set("X-Appwrite-Warning", "The current SDK is built for Appwrite "+ver+". However, the current Appwrite server version is "+AppwriteVersion+". Please downgrade your SDK to match the Appwrite version: https://appwrite.io/docs/sdks")
		}
		next.ServeHTTP(sw, r)
	})
}

// cors answers preflights and sets CORS headers for allowed origins. It
// reports whether the request is fully answered.
func (d *Daemon) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	if !slices.Contains(d.cfg.CORS.Origins, origin) { // config refuses "*"
		if !d.ownOrigin(r, origin) && !isCallback(r) && d.unknownOrigins.first(origin) {
			d.log.Warn("a browser origin not in cors.origins was refused CORS headers (the SDK reports \"Failed to fetch\"); list it in cors.origins if the app is served from it", "origin", truncate(origin, 200))
		}
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "X-Appwrite-Session, X-Fallback-Cookies")
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Origin, Cookie, Set-Cookie, X-Requested-With, Content-Type, Access-Control-Allow-Origin, Access-Control-Request-Headers, Accept, "+
		"X-Appwrite-Project, X-Appwrite-Key, X-Appwrite-Locale, X-Appwrite-Mode, X-Appwrite-JWT, X-Appwrite-Response-Format, X-Appwrite-Timestamp, X-Appwrite-ID, X-Appwrite-Session, "+
		"X-Nuvix-Project, X-Nuvix-Key, X-Nuvix-Locale, X-Nuvix-JWT, X-Nuvix-Response-Format, X-Nuvix-Session, "+
		"X-SDK-Version, X-SDK-Name, X-SDK-Language, X-SDK-Platform, X-SDK-GraphQL, X-Fallback-Cookies, Range, Cache-Control, Expires, Pragma")
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// isCallback reports whether r is an IdP's OAuth2 callback, which comes
// from the IdP's origin (a form_post), never the app's.
func isCallback(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/v1/account/sessions/oauth2/callback/")
}

// maxUnknownOrigins bounds the origins unknownOrigins remembers: a
// client may send any Origin, so the set must not grow with them. Past
// the bound, new origins are not logged.
const maxUnknownOrigins = 1000

// originSet remembers the browser origins already logged as unknown, so
// each is logged once.
type originSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// first reports whether origin is new to the set, and adds it while the
// set has room.
func (s *originSet) first(origin string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[origin]; ok || len(s.seen) >= maxUnknownOrigins {
		return false
	}
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	s.seen[origin] = struct{}{}
	return true
}

// newerVersion reports whether dotted version a is newer than b.
func newerVersion(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			fmt.Sscan(as[i], &x)
		}
		if i < len(bs) {
			fmt.Sscan(bs[i], &y)
		}
		if x != y {
			return x > y
		}
	}
	return false
}

// jwks serves the public signing keys. It reads them from the store at
// most once a second, so a key rotated through another replica (or by
// `handoff keys rotate-signing`) is published by every replica at once,
// not only at each one's next periodic reload: a downstream service that
// meets an unknown kid and fetches the set again finds it on any replica.
func (d *Daemon) jwks(w http.ResponseWriter, r *http.Request) {
	if err := d.storeOpen(); err != nil {
		d.writeError(w, r, err)
		return
	}
	d.keysMu.Lock()
	if now := time.Now(); now.Sub(d.keysRead) >= time.Second {
		d.keysRead = now
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		if err := d.core.ReloadSigningKeys(ctx); err != nil && r.Context().Err() == nil {
			d.logLimited(r.Context(), slog.LevelWarn, "reload signing keys", "err", err.Error()) // serve the set in memory
		}
		cancel()
	}
	d.keysMu.Unlock()
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(d.core.JWKS())
}
