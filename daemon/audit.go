package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// auditor hands events to the audit sink from one goroutine, so a slow or
// dead sink never holds a sign-in: emit puts an event in a bounded buffer
// and drops it (counted, and logged at most once per dropLogEvery) when
// the buffer is full.
type auditor struct {
	sink    auditSink
	batch   int
	events  chan Event
	reopens chan chan error
	stop    chan struct{} // Close was called: drain and end
	giveUp  chan struct{} // auditDrainTimeout after stop: cut retries short
	done    chan struct{}
	log     *slog.Logger
	m       *metrics

	lost atomic.Int64 // events dropped in all

	mu       sync.Mutex // guards dropped and lastDrop
	dropped  int
	lastDrop time.Time
}

// dropLogEvery bounds the log lines about dropped events: one per
// interval, with the count since the last.
const dropLogEvery = 10 * time.Second

// auditDrainTimeout bounds how long Close waits for the sink to take the
// events still buffered.
var auditDrainTimeout = 5 * time.Second

// auditSink is where the audit log goes.
type auditSink interface {
	// write hands the sink a batch of events, each one JSON line with its
	// newline. It may retry, but returns once stop is closed.
	write(lines [][]byte, stop <-chan struct{}) error
	// reopen reopens a file sink's file (logrotate moved it away).
	reopen() error
	io.Closer
}

// newAuditor starts the configured sink; a config without one gives nil,
// and record then keeps no audit log.
func newAuditor(c config.Audit, log *slog.Logger, m *metrics, stdout io.Writer) (*auditor, error) {
	var sink auditSink
	switch c.Sink {
	case config.AuditOff:
		return nil, nil
	case config.AuditStdout:
		sink = &writerSink{w: stdout}
	case config.AuditFile:
		fs, err := openFileSink(c.Path)
		if err != nil {
			return nil, err
		}
		sink = fs
	case config.AuditWebhook:
		w, err := newWebhookSender(c.Webhook, log.With("audit", "webhook"))
		if err != nil {
			return nil, fmt.Errorf("audit.webhook: %w", err)
		}
		sink = &webhookSink{w: w, log: log}
	default:
		return nil, fmt.Errorf("audit.sink %q is not supported", c.Sink)
	}
	a := &auditor{
		sink: sink, batch: max(1, c.Batch), events: make(chan Event, max(1, c.Buffer)),
		reopens: make(chan chan error), stop: make(chan struct{}), giveUp: make(chan struct{}), done: make(chan struct{}),
		log: log, m: m,
	}
	go a.run()
	return a, nil
}

// emit queues ev for the sink, or drops it when the buffer is full.
func (a *auditor) emit(ev Event) {
	select {
	case a.events <- ev:
		a.m.auditEvents.WithLabelValues(ev.Event).Inc()
	default:
		a.drop(1, "the buffer is full")
	}
}

// drop counts lost events and logs them at most once per dropLogEvery.
func (a *auditor) drop(n int, why string) {
	a.m.auditDropped.Add(float64(n))
	a.lost.Add(int64(n))
	a.mu.Lock()
	a.dropped += n
	now := time.Now()
	if now.Sub(a.lastDrop) < dropLogEvery {
		a.mu.Unlock()
		return
	}
	count := a.dropped
	a.dropped, a.lastDrop = 0, now
	a.mu.Unlock()
	a.log.Error("audit events dropped", "count", count, "why", why)
}

// run writes batches until stop, then drains what is buffered, bounded by
// auditDrainTimeout.
func (a *auditor) run() {
	defer close(a.done)
	for {
		select {
		case ev := <-a.events:
			a.flush(a.collect(ev), a.giveUp)
		case ack := <-a.reopens:
			ack <- a.sink.reopen()
		case <-a.stop:
			a.drain()
			return
		}
	}
}

// collect takes first and whatever else is buffered, up to a batch.
func (a *auditor) collect(first Event) []Event {
	evs := []Event{first}
	for len(evs) < a.batch {
		select {
		case ev := <-a.events:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
	return evs
}

func (a *auditor) drain() {
	for {
		select {
		case ev := <-a.events:
			a.flush(a.collect(ev), a.giveUp)
		default:
			return
		}
	}
}

func (a *auditor) flush(evs []Event, stop <-chan struct{}) {
	lines := make([][]byte, 0, len(evs))
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			continue // an Event always marshals
		}
		lines = append(lines, append(b, '\n'))
	}
	if err := a.sink.write(lines, stop); err != nil {
		a.m.auditFailures.Inc()
		a.drop(len(lines), "the sink failed: "+err.Error())
	}
}

// reopen has the sink reopen its file: SIGHUP, after logrotate moved it.
func (a *auditor) reopen() error {
	ack := make(chan error, 1)
	select {
	case a.reopens <- ack:
		return <-ack
	case <-a.done:
		return errors.New("audit log closed")
	}
}

// Close writes what is buffered (for up to auditDrainTimeout) and closes
// the sink.
func (a *auditor) Close() error {
	close(a.stop)
	t := time.AfterFunc(auditDrainTimeout, func() { close(a.giveUp) })
	<-a.done
	t.Stop()
	return a.sink.Close()
}

// writerSink writes lines to a stream (stdout).
type writerSink struct{ w io.Writer }

func (s *writerSink) write(lines [][]byte, _ <-chan struct{}) error {
	for _, l := range lines {
		if _, err := s.w.Write(l); err != nil {
			return err
		}
	}
	return nil
}

func (s *writerSink) reopen() error { return nil }
func (s *writerSink) Close() error  { return nil }

// fileSink appends to a file it reopens on request, so that logrotate's
// rename-then-HUP works: lines written after the reopen go to a new file
// at the configured path.
type fileSink struct {
	path string
	f    *os.File
}

func openFileSink(path string) (*fileSink, error) {
	s := &fileSink{path: path}
	if err := s.reopen(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) reopen() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit.path: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f = f
	return nil
}

// write writes the batch in one call: with O_APPEND, lines of one batch
// stay together even if another process appends to the file.
func (s *fileSink) write(lines [][]byte, _ <-chan struct{}) error {
	var buf []byte
	for _, l := range lines {
		buf = append(buf, l...)
	}
	_, err := s.f.Write(buf)
	return err
}

func (s *fileSink) Close() error { return s.f.Close() }

// webhookSink posts batches of events, signed per Standard Webhooks, in
// the envelope {type, timestamp, data: {events}}; type is "audit.events".
// A failed post is retried with backoff up to the webhook's attempts,
// under the same webhook-id so the receiver can drop duplicates.
type webhookSink struct {
	w   *webhookSender
	log *slog.Logger
}

// auditEnvelope is a webhook post's body.
type auditEnvelope struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      auditEnvelopeIn `json:"data"`
}

type auditEnvelopeIn struct {
	Events []json.RawMessage `json:"events"`
}

// auditRetryBase is the first wait before a post is retried; it doubles
// up to 30 s.
var auditRetryBase = 500 * time.Millisecond

func (s *webhookSink) write(lines [][]byte, stop <-chan struct{}) error {
	evs := make([]json.RawMessage, len(lines))
	for i, l := range lines {
		evs[i] = json.RawMessage(l[:len(l)-1])
	}
	body, err := json.Marshal(auditEnvelope{Type: "audit.events", Timestamp: time.Now().UTC().Format(time.RFC3339Nano), Data: auditEnvelopeIn{Events: evs}})
	if err != nil {
		return err
	}
	id := "msg_" + tokenstore.NewID()
	backoff := auditRetryBase
	for n := 1; ; n++ {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err = s.w.post(ctx, id, body)
		cancel()
		if err == nil {
			return nil
		}
		s.log.Warn("audit webhook post failed", "attempt", n, "attempts", s.w.attempts, "webhook_id", id, "events", len(lines), "err", err.Error())
		if n >= s.w.attempts {
			return err
		}
		select {
		case <-stop:
			return err
		case <-time.After(backoff + rand.N(backoff/2)):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (s *webhookSink) reopen() error { return nil }
func (s *webhookSink) Close() error  { return nil }

// ReopenAudit reopens the audit log's file (audit.sink file), as SIGHUP
// does: logrotate renames the file, then signals, and lines after that go
// to a new file at audit.path. Other sinks have nothing to reopen.
func (d *Daemon) ReopenAudit() error {
	if d.audit == nil {
		return nil
	}
	return d.audit.reopen()
}

// AuditCLI records an event of the handoff command (key.created,
// key.revoked, signing_key.rotated) in the configured audit log, with the
// actor "cli". A stdout sink writes to w instead (the command's stdout may
// be a key that a script reads). It waits until the sink has the event.
func AuditCLI(cfg config.Config, w io.Writer, event, keyID string) error {
	switch eventName(event) {
	case evKeyCreated, evKeyRevoked, evSigningKeyRotated:
	default:
		return fmt.Errorf("audit: %q is not an event of the command line", event)
	}
	m := newMetrics()
	a, err := newAuditor(cfg.Audit, slog.New(slog.DiscardHandler), m, w)
	if err != nil || a == nil {
		return err
	}
	a.emit(Event{Time: time.Now().UTC(), Event: event, Actor: "cli", Outcome: outcomeSuccess, KeyID: keyID})
	if err := a.Close(); err != nil {
		return err
	}
	if a.lost.Load() > 0 {
		return errors.New("audit: the sink did not take the event")
	}
	return nil
}
