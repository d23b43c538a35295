package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

// FsyncResult is the rate of durable small overwrites of one file: the
// ceiling for a store that commits (and fsyncs) one write at a time.
type FsyncResult struct {
	Dir     string  `json:"dir"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// measureFsync overwrites the first 512 bytes of a scratch file in dir and
// fsyncs it, over and over for d, as a store's commit record does.
func measureFsync(ctx context.Context, dir string, d time.Duration) (FsyncResult, error) {
	f, err := os.CreateTemp(dir, "handoff-bench-fsync-*")
	if err != nil {
		return FsyncResult{}, fmt.Errorf("fsync: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		return FsyncResult{}, fmt.Errorf("fsync: %w", err)
	}
	if err := f.Sync(); err != nil {
		return FsyncResult{}, fmt.Errorf("fsync: %w", err)
	}
	buf := make([]byte, 512)
	var lat []time.Duration
	start := time.Now()
	end := start.Add(d)
	for n := 0; ctx.Err() == nil; n++ {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		buf[n%len(buf)]++
		if _, err := f.WriteAt(buf, 0); err != nil {
			return FsyncResult{}, fmt.Errorf("fsync: %w", err)
		}
		if err := f.Sync(); err != nil {
			return FsyncResult{}, fmt.Errorf("fsync: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	s := summarize(lat)
	return FsyncResult{
		Dir: dir, Count: len(lat), Seconds: elapsed.Seconds(), PerSec: float64(len(lat)) / elapsed.Seconds(),
		P50ms: s.P50, P99ms: s.P99, MaxMs: s.Max,
	}, nil
}
