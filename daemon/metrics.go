package daemon

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// metrics counts requests per route and status and times them, and writes
// the Prometheus text format at /metrics. It is a few counters, not a
// client library.
type metrics struct {
	mu     sync.Mutex
	series map[seriesKey]*series
}

type seriesKey struct {
	route  string
	status int
}

// buckets are the latency histogram's upper bounds, in seconds.
var buckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type series struct {
	count  int64
	sum    float64
	counts []int64
}

func newMetrics() *metrics { return &metrics{series: map[seriesKey]*series{}} }

func (m *metrics) observe(r *http.Request, status int, took time.Duration) {
	route := r.Pattern
	if route == "" || route == "/" {
		route = "unmatched"
	}
	secs := took.Seconds()
	m.mu.Lock()
	s, ok := m.series[seriesKey{route, status}]
	if !ok {
		s = &series{counts: make([]int64, len(buckets))}
		m.series[seriesKey{route, status}] = s
	}
	s.count++
	s.sum += secs
	for i, b := range buckets {
		if secs <= b {
			s.counts[i]++
		}
	}
	m.mu.Unlock()
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	keys := make([]seriesKey, 0, len(m.series))
	for k := range m.series {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].route != keys[j].route {
			return keys[i].route < keys[j].route
		}
		return keys[i].status < keys[j].status
	})
	fmt.Fprintln(w, "# HELP handoff_http_requests_total HTTP requests by route and status.")
	fmt.Fprintln(w, "# TYPE handoff_http_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "handoff_http_requests_total{route=%q,status=\"%d\"} %d\n", k.route, k.status, m.series[k].count)
	}
	fmt.Fprintln(w, "# HELP handoff_http_request_duration_seconds HTTP request latency by route.")
	fmt.Fprintln(w, "# TYPE handoff_http_request_duration_seconds histogram")
	for _, k := range keys {
		s := m.series[k]
		lbl := fmt.Sprintf("route=%q,status=\"%d\"", k.route, k.status)
		for i, b := range buckets {
			fmt.Fprintf(w, "handoff_http_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", lbl, strconv.FormatFloat(b, 'g', -1, 64), s.counts[i])
		}
		fmt.Fprintf(w, "handoff_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", lbl, s.count)
		fmt.Fprintf(w, "handoff_http_request_duration_seconds_sum{%s} %g\n", lbl, s.sum)
		fmt.Fprintf(w, "handoff_http_request_duration_seconds_count{%s} %d\n", lbl, s.count)
	}
	m.mu.Unlock()
}

func (d *Daemon) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	d.metrics.write(w)
}
