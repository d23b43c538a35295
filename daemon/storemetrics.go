package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffd/handoff/tokenstore"
)

// observeStore times one store step of the token core into
// handoff_store_operation_duration_seconds, by step (mint, exchange,
// session_by_hash, ...) and result. It is the core's Options.Observe; a
// nil m counts nothing.
func (m *metrics) observeStore(step string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.storeOps.WithLabelValues(step, result(err)).Observe(took.Seconds())
}

// watchStore exports the store's own figures, when it keeps any
// (tokenstore.FigureReporter: bolt's commits, PostgreSQL's round trips,
// group commits and pool), as handoff_store_<name>, read at each scrape.
func (m *metrics) watchStore(s tokenstore.Store) {
	if r, ok := s.(tokenstore.FigureReporter); ok && m != nil {
		m.reg.MustRegister(storeFigures{r})
	}
}

// storeFigures is the collector of a store's figures. It describes
// nothing up front (an unchecked collector): the store names its own.
type storeFigures struct{ r tokenstore.FigureReporter }

func (storeFigures) Describe(chan<- *prometheus.Desc) {}

func (c storeFigures) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.r.Figures() {
		kind := prometheus.GaugeValue
		if f.Counter {
			kind = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("handoff_store_"+f.Name, f.Help, nil, nil), kind, f.Value)
	}
}
