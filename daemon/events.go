package daemon

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// eventName is an audit event's name. The names are a contract with the
// operator's tooling (SIEM rules, alerts): add new ones, never rename.
type eventName string

// The security events.
const (
	evUserCreated         eventName = "user.created"
	evUserDeleted         eventName = "user.deleted"
	evTokenMinted         eventName = "token.minted"
	evTokenExchanged      eventName = "token.exchanged"
	evTokenExchangeFailed eventName = "token.exchange_failed"
	evTokenBurned         eventName = "token.burned"
	evSessionCreated      eventName = "session.created"
	evSessionDeleted      eventName = "session.deleted"
	evVerifySucceeded     eventName = "verify.succeeded"
	evVerifyFailed        eventName = "verify.failed"
	evOAuth2Failed        eventName = "oauth2.failed"
	evKeyCreated          eventName = "key.created"
	evKeyRevoked          eventName = "key.revoked"
	evSigningKeyRotated   eventName = "signing_key.rotated"
	evProviderUp          eventName = "provider.up"
	evProviderDown        eventName = "provider.down"
)

// failure reports whether the event is a refusal or a fault, logged at
// WARN.
func (n eventName) failure() bool {
	switch n {
	case evTokenExchangeFailed, evTokenBurned, evVerifyFailed, evOAuth2Failed, evProviderDown:
		return true
	}
	return false
}

// The outcomes of an event.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

// Event is one line of the audit log. It names who did what to whom and
// why it failed, never a secret: ids, addresses, provider names and reason
// codes only. Every field is always present (empty when unknown), so a
// reader has one schema.
type Event struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	RequestID string    `json:"request_id"`
	// Actor is who acted: "key:<id>" (an API key), "user:<id>" (a
	// session or JWT), "anonymous", "cli" (the handoff command) or
	// "system" (the daemon itself, as for provider.up).
	Actor     string `json:"actor"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Provider  string `json:"provider"`
	UserID    string `json:"user_id"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason"`
	// KeyID is the API key a key.* event is about, SessionID the session
	// of a session.* event; Count how many tokens or sessions it covers.
	KeyID     string `json:"key_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Count     int    `json:"count,omitempty"`

	// cause is a failure's underlying error for the WARN line (an SMTP
	// server's answer, a webhook's status), never for the audit log.
	cause string
}

// origin is where an event comes from: the request and its caller.
type origin struct {
	requestID, actor, ip, userAgent string
}

// systemOrigin is the daemon acting on its own.
var systemOrigin = origin{actor: "system"}

type requestIDKey struct{}

// withRequestID gives the request an id of its own: in its context for the
// logs and events, and in the X-Request-Id answer header, so a client's
// report can be found in the logs. A client's own X-Request-Id is not
// trusted: it would let anyone write into the audit log's ids.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	id := tokenstore.NewID()
	w.Header().Set("X-Request-Id", id)
	return r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
}

// requestID returns the request's id, or "".
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// originOf is the origin of events in a request by c (nil: not yet known).
func (d *Daemon) originOf(r *http.Request, c *caller) origin {
	o := origin{requestID: requestID(r.Context()), actor: "anonymous", userAgent: r.UserAgent()}
	if c == nil {
		o.ip = d.proxies.client(r).ip
		return o
	}
	o.ip, o.userAgent = c.ip, d.userAgent(r, c)
	switch {
	case c.key != nil:
		o.actor = "key:" + c.key.ID
	case c.user != nil:
		o.actor = "user:" + c.user.ID
	}
	return o
}

// record is the one place a security event is recorded: a WARN line for a
// failure, its metrics, and the audit log. It never blocks on the audit
// sink.
func (d *Daemon) record(o origin, ev Event) {
	ev.Time = time.Now().UTC()
	ev.RequestID, ev.Actor, ev.IP, ev.UserAgent = o.requestID, o.actor, o.ip, truncate(o.userAgent, 512)
	ev.Provider = truncate(ev.Provider, 64) // a client's path may name a provider that does not exist
	ev.Outcome = outcomeSuccess
	name := eventName(ev.Event)
	if name.failure() {
		ev.Outcome = outcomeFailure
		attrs := []slog.Attr{
			slog.String("request_id", ev.RequestID), slog.String("provider", ev.Provider),
			slog.String("user_id", ev.UserID), slog.String("reason", ev.Reason), slog.String("ip", ev.IP),
		}
		if ev.Count > 0 {
			attrs = append(attrs, slog.Int("count", ev.Count))
		}
		if ev.cause != "" {
			attrs = append(attrs, slog.String("cause", ev.cause))
		}
		d.log.LogAttrs(context.Background(), slog.LevelWarn, ev.Event, attrs...)
	}
	d.count(name, ev)
	if d.audit != nil {
		d.audit.emit(ev)
	}
}

// count updates the domain series an event moves.
func (d *Daemon) count(name eventName, ev Event) {
	m := d.metrics
	switch name {
	case evTokenMinted:
		m.minted.WithLabelValues(cmp.Or(ev.Provider, "api")).Inc()
	case evTokenExchanged:
		m.exchanges.WithLabelValues("ok").Inc()
	case evTokenExchangeFailed:
		m.exchanges.WithLabelValues(exchangeResult(ev.Reason)).Inc()
	case evTokenBurned:
		m.burned.Add(float64(ev.Count))
	case evSessionCreated:
		via := "token"
		if ev.Provider == "server" {
			via = "server"
		}
		m.sessionsNew.WithLabelValues(via).Inc()
	case evSessionDeleted:
		m.sessionsGone.Add(float64(max(1, ev.Count)))
	case evVerifySucceeded:
		m.verifications.WithLabelValues(d.providerLabel(ev.Provider), "ok").Inc()
	case evVerifyFailed:
		m.verifications.WithLabelValues(d.providerLabel(ev.Provider), ev.Reason).Inc()
	case evOAuth2Failed:
		m.oauth2Fails.WithLabelValues(d.providerLabel(ev.Provider), ev.Reason).Inc()
	case evUserCreated, evUserDeleted, evKeyCreated, evKeyRevoked, evSigningKeyRotated, evProviderUp, evProviderDown:
	}
}

// providerLabel keeps a client-chosen name (an unknown provider in the
// path) out of the series' labels.
func (d *Daemon) providerLabel(name string) string {
	if _, ok := d.providers[name]; ok {
		return name
	}
	return "unknown"
}

// The reasons of token.exchange_failed beyond tokenstore's.
const (
	reasonRateLimited = "rate_limited"
	reasonStore       = "store_unavailable"
)

// exchangeResult maps token.exchange_failed's reason to the result label
// of handoff_token_exchanges_total.
func exchangeResult(reason string) string {
	switch tokenstore.ExchangeFailure(reason) {
	case tokenstore.ExchangeUnknownUser, tokenstore.ExchangeWrongSecret:
		return "invalid"
	case tokenstore.ExchangeExpired:
		return "expired"
	case tokenstore.ExchangeBurned:
		return "burned"
	}
	switch reason {
	case reasonRateLimited:
		return "limited"
	case reasonStore, errServer.Type:
		return "error"
	}
	return "invalid" // a malformed request: no user id, no secret
}

// reason is the reason code of a failed request's event: its Appwrite
// error type (user_invalid_credentials, provider_unavailable, ...), a
// bounded set the error catalogue in errors.go lists. It returns the
// answer too, so the handler returns what was recorded without mapping
// (and logging) the error twice.
func (d *Daemon) reason(r *http.Request, err error) (string, *apiError) {
	ae := d.toAPIError(r, err)
	return ae.Type, ae
}

// causeOf is the text of a failure's underlying error for the WARN line,
// when it is more than one of our answers (which says nothing the reason
// does not).
func causeOf(err error) string {
	var rf *refusal
	if errors.As(err, &rf) {
		err = rf.err
	}
	if _, ours := err.(*apiError); err == nil || ours {
		return ""
	}
	return err.Error()
}

// watchProviders registers the providers' health series and records
// provider.up and provider.down as each provider's health changes, polled
// every interval from the host's status (the host keeps no listeners). A
// crash and restart between two polls is still seen: the restart count
// moved, and both events are recorded. The first poll records where each
// provider stands after the start.
func (d *Daemon) watchProviders(every time.Duration) {
	if d.host == nil {
		return
	}
	d.metrics.reg.MustRegister(newProviderCollector(d.host.Status))
	type seen struct {
		health   providers.Health
		restarts int
	}
	last := map[string]seen{}
	down := func(st providers.Status, why string) {
		d.record(systemOrigin, Event{Event: string(evProviderDown), Provider: st.Name, Reason: why, cause: st.LastError})
	}
	poll := func() {
		for _, st := range d.host.Status() {
			prev, known := last[st.Name]
			last[st.Name] = seen{st.Health, st.Restarts}
			missed := known && st.Restarts > prev.restarts && prev.health == providers.HealthUp
			switch {
			case missed && st.Health == providers.HealthUp:
				down(st, "restarted")
				d.record(systemOrigin, Event{Event: string(evProviderUp), Provider: st.Name})
			case known && st.Health == prev.health:
			case st.Health == providers.HealthUp:
				d.record(systemOrigin, Event{Event: string(evProviderUp), Provider: st.Name})
			case prev.health == providers.HealthUp || (!known && st.Health != providers.HealthStarting):
				down(st, string(st.Health))
			}
		}
	}
	poll()
	d.bg.Go(func(stop <-chan struct{}) {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				poll()
			}
		}
	})
}

// The reason codes of sign-in failures that are not an error type of the
// answer.
const (
	reasonDeliveryFailed = "delivery_failed"
	reasonGuardFailed    = "guard_failed"
	// OAuth2 callback refusals.
	reasonBadCallback      = "bad_callback"
	reasonStateMissing     = "state_missing"
	reasonStateUnknown     = "state_unknown" // unknown, spent or expired
	reasonStateOther       = "state_other_provider"
	reasonBindingMissing   = "binding_cookie_missing"
	reasonBindingMismatch  = "binding_cookie_mismatch"
	reasonIdPError         = "idp_error"
	reasonProjectNotFound  = "project_not_found"
	reasonAuthorizeNoState = "authorize_url_without_state"
)

// The reason codes of a provider whose config a service it depends on
// refused (sdk.ErrMisconfigured): the operator's to fix, not the user's.
const (
	// reasonIdPInvalidClient: the IdP refused handoff's own client in the
	// OAuth2 callback's code exchange (a wrong client_id or client_secret).
	reasonIdPInvalidClient = "idp_invalid_client"
	// reasonMisconfigured: any other call refused so (a captcha service
	// refusing the secret key).
	reasonMisconfigured = "provider_misconfigured"
)

// refusal gives a failure the reason code its event records, in place of
// the error type of the answer, which it leaves as it is.
type refusal struct {
	reason string
	err    error
}

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

func refused(reason string, err error) error { return &refusal{reason: reason, err: err} }

// signInFailed records a failed sign-in as ev (verify.failed,
// oauth2.failed) and returns the answer to it.
func (d *Daemon) signInFailed(r *http.Request, c *caller, ev eventName, provider, userID string, err error) error {
	reason, ae := d.reason(r, err)
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		reason = rf.reason
	case errors.Is(err, sdk.ErrMisconfigured):
		reason = reasonMisconfigured
	}
	d.record(d.originOf(r, c), Event{Event: string(ev), Provider: provider, UserID: userID, Reason: reason, cause: causeOf(err)})
	return ae
}
