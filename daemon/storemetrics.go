package daemon

import "time"

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
