package bench

import (
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Latency summarizes a set of latencies, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// summarize sorts lat in place and returns its percentiles (nearest rank).
func summarize(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.5) - 1
		return ms(lat[min(max(i, 0), len(lat)-1)])
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return Latency{
		Count: len(lat), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(lat[len(lat)-1]),
		Mean: ms(sum / time.Duration(len(lat))),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// hist is a log-linear histogram of durations (as HDR histograms are):
// 2^subBits buckets per power of two, so a bucket is at most 1/32 (3 %)
// wide. Its counters are atomic: every client adds to it, and the
// progress line reads it once a second.
type hist struct {
	counts [(64 - subBits + 1) << subBits]atomic.Uint64
}

const subBits = 5

func bucketOf(ns int64) int {
	v := uint64(max(ns, 0))
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - 1 // e >= subBits
	m := (v >> (e - subBits)) & (1<<subBits - 1)
	return (e-subBits+1)<<subBits | int(m)
}

// bucketValue is the lower bound of bucket i, in nanoseconds.
func bucketValue(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits + subBits - 1
	m := int64(i & (1<<subBits - 1))
	return 1<<e | m<<(e-subBits)
}

func (h *hist) add(d time.Duration) { h.counts[bucketOf(int64(d))].Add(1) }

// histSnap is a copy of a hist's counters.
type histSnap [(64 - subBits + 1) << subBits]uint64

func (h *hist) snapshot(s *histSnap) {
	for i := range h.counts {
		s[i] = h.counts[i].Load()
	}
}

// quantiles returns the p-quantiles of the counts in now minus before.
func quantiles(now, before *histSnap, ps ...float64) (n uint64, out []time.Duration) {
	for i := range now {
		n += now[i] - before[i]
	}
	out = make([]time.Duration, len(ps))
	if n == 0 {
		return 0, out
	}
	for j, p := range ps {
		rank := uint64(p*float64(n) + 0.5)
		rank = max(rank, 1)
		var seen uint64
		for i := range now {
			seen += now[i] - before[i]
			if seen >= rank {
				out[j] = time.Duration(bucketValue(i))
				break
			}
		}
	}
	return n, out
}
