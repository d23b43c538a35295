package daemon

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoffd/handoff/providers"
)

// metrics are the daemon's Prometheus series, in a registry of its own
// (several daemons in one test process each count their own). Labels are
// few and bounded: routes, providers and reason codes from the config and
// the code, never a user id, an IP or anything a client chooses.
type metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	minted        *prometheus.CounterVec
	exchanges     *prometheus.CounterVec
	burned        prometheus.Counter
	sessionsNew   *prometheus.CounterVec
	sessionsGone  prometheus.Counter
	verifications *prometheus.CounterVec
	oauth2Fails   *prometheus.CounterVec
	deliveries    *prometheus.CounterVec
	limited       *prometheus.CounterVec
	providerCalls *prometheus.HistogramVec
	storeOps      *prometheus.HistogramVec
	auditEvents   *prometheus.CounterVec
	auditDropped  prometheus.Counter
	auditFailures prometheus.Counter
}

// latencyBuckets are the request and call histograms' upper bounds, in
// seconds: 1 ms to 10 s, where a sign-in's plugin call and store commit
// live.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
		m.reg.MustRegister(v)
		return v
	}
	single := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = counter("handoff_http_requests_total", "HTTP requests by route and status.", "route", "status")
	m.latency = histogram("handoff_http_request_duration_seconds", "HTTP request latency by route and status.", "route", "status")
	m.minted = counter("handoff_tokens_minted_total", "One-time tokens minted, by provider (api: users.createToken).", "provider")
	m.exchanges = counter("handoff_token_exchanges_total", "Token exchanges (POST /v1/account/sessions/token) by result: ok, invalid, expired, burned, limited, error.", "result")
	m.burned = single("handoff_tokens_burned_total", "Tokens deleted because they faced tokens.max_attempts wrong guesses.")
	m.sessionsNew = counter("handoff_sessions_created_total", "Sessions created, by how: token (an exchange) or server (users.createSession).", "via")
	m.sessionsGone = single("handoff_sessions_deleted_total", "Sessions deleted through the API.")
	m.verifications = counter("handoff_verifications_total", "Direct sign-ins (POST /v1/providers/{name}/verify) by provider and result: ok or the error type.", "provider", "result")
	m.oauth2Fails = counter("handoff_oauth2_failures_total", "Refused OAuth2 redirect flows by provider and reason.", "provider", "reason")
	m.deliveries = counter("handoff_deliveries_total", "Out-of-band deliveries of a secret by channel (webhook, email, sms) and final result (ok, failed).", "channel", "result")
	m.limited = counter("handoff_rate_limited_total", "Requests refused by a rate limit (429), by route.", "route")
	m.providerCalls = histogram("handoff_provider_call_duration_seconds", "Plugin calls by provider, method and result (ok, error).", "provider", "method", "result")
	m.storeOps = histogram("handoff_store_operation_duration_seconds", "Store steps of the token core by operation (mint, exchange, session_by_hash, sign_in, hit, ...) and result (ok, error).", "operation", "result")
	m.auditEvents = counter("handoff_audit_events_total", "Audit events handed to the audit sink, by event.", "event")
	m.auditDropped = single("handoff_audit_dropped_total", "Audit events dropped because the sink's buffer was full or the sink failed.")
	m.auditFailures = single("handoff_audit_sink_failures_total", "Batches the audit sink failed to take (a webhook batch after its last attempt); their events are dropped.")
	return m
}

// providerCollector reports each provider's health and restarts at scrape
// time, from the host's own status.
type providerCollector struct {
	status   func() []providers.Status
	health   *prometheus.Desc
	restarts *prometheus.Desc
}

// healthStates are the values of handoff_provider_health's state label;
// a state the host reports that is not here is reported as itself too.
var healthStates = []providers.Health{providers.HealthStarting, providers.HealthUp, providers.HealthRestarting, providers.HealthDown}

func newProviderCollector(status func() []providers.Status) *providerCollector {
	return &providerCollector{
		status:   status,
		health:   prometheus.NewDesc("handoff_provider_health", "1 for the provider's current health state (starting, up, restarting, down), 0 for the others.", []string{"provider", "state"}, nil),
		restarts: prometheus.NewDesc("handoff_provider_restarts_total", "Restarts of the provider's plugin after a crash.", []string{"provider"}, nil),
	}
}

func (c *providerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.health
	ch <- c.restarts
}

func (c *providerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.status() {
		known := false
		for _, s := range healthStates {
			v := 0.0
			if s == st.Health {
				v, known = 1, true
			}
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, v, st.Name, string(s))
		}
		if !known {
			ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, 1, st.Name, string(st.Health))
		}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
	}
}

func (m *metrics) observe(r *http.Request, status int, took time.Duration) {
	route := r.Pattern
	if route == "" || route == "/" {
		route = "unmatched"
	}
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(route, code).Inc()
	m.latency.WithLabelValues(route, code).Observe(took.Seconds())
}

// call times one plugin call.
func (m *metrics) call(provider, method string, start time.Time, err error) {
	m.providerCalls.WithLabelValues(provider, method, result(err)).Observe(time.Since(start).Seconds())
}

// delivered counts one delivery's final outcome on channel.
func (m *metrics) delivered(channel string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.deliveries.WithLabelValues(channel, outcome).Inc()
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// metricsHandler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (d *Daemon) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{d.log}})
}

// slogPrinter gives promhttp a logger for its encoding errors.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("serve metrics", "err", fmt.Sprint(v...)) }
