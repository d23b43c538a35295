package bench

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// Result is one load run.
type Result struct {
	Scenario string `json:"scenario"`
	// Target is the URL driven, or "self" for the bench's own daemon.
	Target string `json:"target"`
	// Store is the self-started daemon's store ("bolt" or "postgres").
	Store           string  `json:"store,omitempty"`
	Clients         int     `json:"clients"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	DurationSeconds float64 `json:"duration_seconds"`
	// MeasuredSeconds is shorter than DurationSeconds when the exchange
	// pool ran out.
	MeasuredSeconds float64 `json:"measured_seconds"`
	Preload         int     `json:"preload"`
	PreloadSeconds  float64 `json:"preload_seconds,omitempty"`
	Pool            int     `json:"pool,omitempty"`

	// Ops counts the successful operations started while measuring; an
	// operation of flow is a verify and an exchange.
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latency is of whole successful operations; Steps of each request.
	Latency Latency      `json:"latency"`
	Steps   []StepResult `json:"steps"`
	// Errors counts failed operations by step and HTTP status ("exchange
	// 429") or "<step> transport"; ErrorSamples holds one answer of each.
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`

	// Process is the bench's own process, which holds the self-started
	// daemon and the load generator; its peak is since measuring began.
	Process *Proc `json:"process,omitempty"`
	// Plugins are the daemon's plugin processes; their peaks are since
	// measuring began.
	Plugins []Proc `json:"plugins,omitempty"`
	// Commits are the bolt store's write transactions while measuring
	// (one fsync each), CommittedWrites the writes (Update calls) they
	// carried: their ratio is the mean group-commit size.
	Commits         uint64 `json:"commits,omitempty"`
	CommittedWrites uint64 `json:"committed_writes,omitempty"`

	CPUs       int        `json:"cpus"`
	LoadBefore [3]float64 `json:"load_average_before"`
	LoadAfter  [3]float64 `json:"load_average_after"`
	Notes      []string   `json:"notes,omitempty"`
}

// StepResult is the latency of one request of an operation.
type StepResult struct {
	Name    string  `json:"name"`
	Latency Latency `json:"latency"`
}

// Report is everything one invocation measured; --json prints it.
type Report struct {
	Fsync   *FsyncResult   `json:"fsync,omitempty"`
	Startup *StartupResult `json:"startup,omitempty"`
	Load    *Result        `json:"load,omitempty"`
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// printResult writes r as a table.
func printResult(w io.Writer, r *Result) {
	where := "target " + r.Target
	if r.Target == "self" {
		where = "self-started daemon (" + r.Store + ", durable, same process)"
	}
	fmt.Fprintf(w, "\nhandoff bench: %s, %d clients, %.0fs measured after %.0fs warm-up, %s, %d CPUs\n",
		r.Scenario, r.Clients, r.MeasuredSeconds, r.WarmupSeconds, where, r.CPUs)
	if r.Preload > 0 {
		fmt.Fprintf(w, "preload: %s live sessions and tokens", thousands(int64(r.Preload)))
		if r.PreloadSeconds > 0 {
			fmt.Fprintf(w, " in %.1fs", r.PreloadSeconds)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	name := r.Scenario
	if len(r.Steps) > 1 {
		name += " (" + strings.Join(stepNames(r.Steps), "+") + ")"
	}
	width := len(name) + 2
	fmt.Fprintf(tw, "%-*s\tops/s\tp50\tp90\tp99\tmax\t\n", width, "")
	row := func(name string, rate string, l Latency) {
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t%s\t%s\t\n", width, name, rate, fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.Max))
	}
	row(name, thousands(int64(r.OpsPerSec)), r.Latency)
	if len(r.Steps) > 1 {
		for _, s := range r.Steps {
			row("  "+s.Name, "", s.Latency)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nops: %s ok", thousands(r.Ops))
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, ", no errors")
	} else {
		var total int64
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			total += r.Errors[k]
			parts = append(parts, fmt.Sprintf("%s ×%s", k, thousands(r.Errors[k])))
		}
		fmt.Fprintf(w, ", %s errors: %s\n", thousands(total), strings.Join(parts, ", "))
		for _, k := range slices.Sorted(maps.Keys(r.ErrorSamples)) {
			fmt.Fprintf(w, "  e.g. %s: %s\n", k, truncate(r.ErrorSamples[k], 200))
		}
	}
	cpu := func(p Proc) string {
		if p.CPUSeconds == 0 || r.MeasuredSeconds == 0 {
			return ""
		}
		s := fmt.Sprintf("; CPU %.0f%% of a core", 100*p.CPUSeconds/r.MeasuredSeconds)
		if r.Ops > 0 {
			s += fmt.Sprintf(", %.0fµs per op", 1e6*p.CPUSeconds/float64(r.Ops))
		}
		return s
	}
	if p := r.Process; p != nil {
		fmt.Fprintf(w, "daemon + load generator (one process): peak RSS %s while measuring; RSS now %s (anon %s, file %s)%s\n",
			mb(p.Peak), mb(p.RSS), mb(p.Anon), mb(p.File), cpu(*p))
	}
	for _, p := range r.Plugins {
		fmt.Fprintf(w, "%s (pid %d): peak RSS %s while measuring; RSS now %s (anon %s, file %s)%s\n", p.Name, p.PID, mb(p.Peak), mb(p.RSS), mb(p.Anon), mb(p.File), cpu(p))
	}
	if r.Commits > 0 {
		fmt.Fprintf(w, "bolt store: %s commits/s, %.1f writes per commit", thousands(int64(float64(r.Commits)/r.MeasuredSeconds)), float64(r.CommittedWrites)/float64(r.Commits))
		if p := r.Process; p != nil && p.DiskWriteBytes > 0 && r.Ops > 0 {
			fmt.Fprintf(w, "; disk writes %.1f MB/s, %.1f KB per op, %.0f KB per commit",
				float64(p.DiskWriteBytes)/(1<<20)/r.MeasuredSeconds, float64(p.DiskWriteBytes)/1024/float64(r.Ops), float64(p.DiskWriteBytes)/1024/float64(r.Commits))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "load average before %.2f, after %.2f\n", r.LoadBefore[0], r.LoadAfter[0])
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func stepNames(steps []StepResult) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

func printFsync(w io.Writer, f *FsyncResult) {
	fmt.Fprintf(w, "\nfsync of a 512-byte overwrite in %s: %s/s over %.1fs (p50 %s, p99 %s, max %s)\n",
		f.Dir, thousands(int64(f.PerSec)), f.Seconds, fmtMs(f.P50ms), fmtMs(f.P99ms), fmtMs(f.MaxMs))
	fmt.Fprintln(w, "  the ceiling for a store that commits one durable write at a time; group commit shares one fsync among many")
}

func numCPU() int { return runtime.NumCPU() }
