package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what the clients measured.
type loadResult struct {
	ops       int64
	elapsed   time.Duration
	total     []time.Duration   // per successful op
	steps     [][]time.Duration // per step, per successful op
	errors    map[string]int64  // by "<step> <status>" or "<step> transport"
	samples   map[string]string // one message per error class
	exhausted bool              // the pool ran out before the end
}

// worker is one client's share of the measurements; only it writes them.
type worker struct {
	total   []time.Duration
	steps   [][]time.Duration
	errors  map[string]int64
	samples map[string]string
}

func errorClass(err error) (string, string) {
	var se *statusError
	if errors.As(err, &se) {
		if se.Status == 0 {
			return se.Step + " transport", se.Body
		}
		return fmt.Sprintf("%s %d", se.Step, se.Status), se.Body
	}
	return "other", err.Error()
}

// runLoad runs sc with cfg.Clients clients: cfg.Warmup unmeasured, then
// cfg.Duration measured. atMeasure runs when measuring starts. A line of
// progress goes to progress every second.
func runLoad(ctx context.Context, cfg Config, sc *scenario, progress io.Writer, atMeasure func()) (loadResult, error) {
	var (
		h         hist
		okN, errN atomic.Int64
		exhausted atomic.Int64 // unix nanos of the first errPoolEmpty
		wg        sync.WaitGroup
	)
	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		w := &worker{steps: make([][]time.Duration, len(sc.steps)), errors: map[string]int64{}, samples: map[string]string{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			steps := make([]time.Duration, len(sc.steps))
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) || exhausted.Load() != 0 {
					return
				}
				clear(steps)
				err := sc.op(ctx, steps)
				d := time.Since(t0)
				if errors.Is(err, errPoolEmpty) {
					exhausted.CompareAndSwap(0, time.Now().UnixNano())
					return
				}
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					h.add(d)
					okN.Add(1)
				} else {
					errN.Add(1)
				}
				if t0.Before(measureStart) {
					continue
				}
				if err != nil {
					class, msg := errorClass(err)
					w.errors[class]++
					if _, ok := w.samples[class]; !ok {
						w.samples[class] = msg
					}
					continue
				}
				w.total = append(w.total, d)
				for j, s := range steps {
					w.steps[j] = append(w.steps[j], s)
				}
			}
		}()
	}

	// Progress, and the start of measuring.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var measureTimer <-chan time.Time
	if cfg.Warmup > 0 {
		measureTimer = time.After(cfg.Warmup)
	} else if atMeasure != nil {
		atMeasure()
	}
	var prev, cur histSnap
	var prevOK, prevErr int64
	last := start
loop:
	for {
		select {
		case <-done:
			break loop
		case <-measureTimer:
			if atMeasure != nil {
				atMeasure()
			}
		case now := <-tick.C:
			h.snapshot(&cur)
			n, q := quantiles(&cur, &prev, 0.5, 0.99)
			ok, bad := okN.Load(), errN.Load()
			phase := "measure"
			if last.Before(measureStart) {
				phase = "warmup "
			}
			fmt.Fprintf(progress, "[%3.0fs] %s %s  %8s ops/s  p50 %7s  p99 %7s  errors %s\n",
				now.Sub(start).Seconds(), phase, sc.name,
				thousands(int64(float64(ok-prevOK)/now.Sub(last).Seconds())),
				fmtDur(q[0], n), fmtDur(q[1], n), thousands(bad-prevErr))
			prev, prevOK, prevErr, last = cur, ok, bad, now
		}
	}
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}

	stop := end
	res := loadResult{errors: map[string]int64{}, samples: map[string]string{}, steps: make([][]time.Duration, len(sc.steps))}
	if x := exhausted.Load(); x != 0 {
		res.exhausted = true
		if t := time.Unix(0, x); t.Before(stop) {
			stop = t
		}
		if !stop.After(measureStart) {
			return loadResult{}, fmt.Errorf("bench: the %s tokens minted ahead ran out during the warm-up: raise --pool", thousands(int64(sc.pool)))
		}
	}
	res.elapsed = stop.Sub(measureStart)
	for _, w := range workers {
		res.total = append(res.total, w.total...)
		for j := range w.steps {
			res.steps[j] = append(res.steps[j], w.steps[j]...)
		}
		for k, v := range w.errors {
			res.errors[k] += v
			if _, ok := res.samples[k]; !ok {
				res.samples[k] = w.samples[k]
			}
		}
	}
	res.ops = int64(len(res.total))
	return res, nil
}

// fmtDur prints a latency for the progress line, or "-" without samples.
func fmtDur(d time.Duration, n uint64) string {
	if n == 0 {
		return "-"
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", ms(d))
	}
	return fmt.Sprintf("%.0fms", ms(d))
}
