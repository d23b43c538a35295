package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/pflag"

	"github.com/handoffd/handoff/daemon"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
	"github.com/handoffd/handoff/tokenstore/postgres"
)

// Options are what the handoff binary hands the bench.
type Options struct {
	// Builtins are the binary's built-in plugin kinds (main.go's map), for
	// the daemon the bench starts. The bench never imports a plugin.
	Builtins map[string]sdk.Factory
	// OpenStore opens the self-started daemon's store (main.go's).
	OpenStore daemon.OpenStore
	// Executable is the handoff binary: the self-started daemon re-executes
	// it for its plugins, and --startup runs `<Executable> serve`.
	Executable string
	// Stdout receives the results, Stderr the progress and the
	// self-started daemon's logs. Nil discards.
	Stdout, Stderr io.Writer
}

func (o *Options) defaults() {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
}

// Main is `handoff bench ARGS`.
func Main(ctx context.Context, args []string, opts Options) error {
	opts.defaults()
	cfg, err := ParseConfig(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprint(opts.Stdout, Usage+FlagUsage())
		return nil
	}
	if err != nil {
		return err
	}
	_, err = Run(ctx, cfg, opts)
	return err
}

// Run measures what cfg asks for, prints it (a table per measurement, or
// with cfg.JSON one JSON document) and returns it.
func Run(ctx context.Context, cfg Config, opts Options) (*Report, error) {
	opts.defaults()
	rep := &Report{}
	out := opts.Stdout
	if cfg.JSON {
		out = io.Discard
	}
	if cfg.Fsync {
		dir := cfg.Data
		if dir == "" {
			dir = os.TempDir()
		}
		fmt.Fprintf(opts.Stderr, "measuring fsync in %s for %s\n", dir, cfg.FsyncFor)
		f, err := measureFsync(ctx, dir, cfg.FsyncFor)
		if err != nil {
			return nil, err
		}
		rep.Fsync = &f
		printFsync(out, &f)
	}
	if cfg.Startup {
		s, err := measureStartup(ctx, cfg, opts)
		if err != nil {
			return nil, err
		}
		rep.Startup = s
		printStartup(out, s)
	}
	if cfg.load {
		r, err := runScenario(ctx, cfg, opts)
		if err != nil {
			return nil, err
		}
		rep.Load = r
		printResult(out, r)
	}
	if cfg.JSON {
		enc := json.NewEncoder(opts.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// runScenario sets up the daemon (or reaches the target), prepares the
// scenario, runs the load and collects the result.
func runScenario(ctx context.Context, cfg Config, opts Options) (*Result, error) {
	res := &Result{
		Scenario: cfg.Scenario, Target: cfg.Target, Clients: cfg.Clients, Preload: cfg.Preload,
		WarmupSeconds: cfg.Warmup.Seconds(), DurationSeconds: cfg.Duration.Seconds(),
		CPUs: numCPU(), LoadBefore: loadAverage(),
	}
	e := &env{cfg: cfg, progress: opts.Stderr}
	var self *selfDaemon
	if cfg.Target == "" {
		fmt.Fprintf(opts.Stderr, "starting a daemon in this process (%s store)\n", cfg.Store)
		var err error
		self, err = startSelf(ctx, cfg, opts, cfg.Scenario == "flow")
		if err != nil {
			return nil, err
		}
		defer self.close()
		res.Target, res.Store = "self", cfg.Store
		e.api = newClient(self.url, cfg.Project, self.key, cfg.Clients)
		e.core = self.core()
	} else {
		e.api = newClient(cfg.Target, cfg.Project, cfg.Key, cfg.Clients)
	}
	defer e.api.close()

	if cfg.Preload > 0 {
		took, err := e.preload(ctx, cfg.Preload)
		if err != nil {
			return nil, err
		}
		res.PreloadSeconds = took.Seconds()
	}
	sc, err := e.setup(ctx)
	if err != nil {
		return nil, err
	}
	res.Pool = sc.pool
	res.Notes = append(res.Notes, sc.notes...)

	var prof *os.File
	cpu0 := map[int]time.Duration{}
	var io0 int64
	var (
		bolt0 bolt.Stats
		pg0   postgres.Stats
	)
	st := e.coreStore()
	if u, ok := st.(interface{ Unwrap() tokenstore.Store }); ok {
		st = u.Unwrap() // the daemon's timing wrapper
	}
	boltStore, _ := st.(*bolt.Store)
	pgStore, _ := st.(*postgres.Store)
	atMeasure := func() {
		if self == nil {
			return
		}
		if boltStore != nil {
			bolt0 = boltStore.Stats()
		}
		if pgStore != nil {
			pg0 = pgStore.Stats()
		}
		io0 = diskWrites(os.Getpid())
		for _, pid := range append([]int{os.Getpid()}, children(os.Getpid())...) {
			resetPeak(pid)
			cpu0[pid] = cpuTime(pid)
		}
		if cfg.CPUProfile != "" {
			f, err := os.Create(cfg.CPUProfile)
			if err == nil && pprof.StartCPUProfile(f) == nil {
				prof = f
			} else {
				fmt.Fprintln(opts.Stderr, "bench: cpu profile:", err)
			}
		}
	}
	fmt.Fprintf(opts.Stderr, "running %s: %d clients, %s warm-up, %s measured\n", cfg.Scenario, cfg.Clients, cfg.Warmup, cfg.Duration)
	lr, err := runLoad(ctx, cfg, sc, opts.Stderr, atMeasure)
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
		res.Notes = append(res.Notes, "CPU profile of the measured part (daemon and load generator) in "+cfg.CPUProfile)
	}
	if err != nil {
		return nil, err
	}
	if self != nil {
		if m, err := readMemory(os.Getpid()); err == nil {
			m.CPUSeconds = (cpuTime(m.PID) - cpu0[m.PID]).Seconds()
			m.DiskWriteBytes = diskWrites(m.PID) - io0
			res.Process = &m
		}
		res.Plugins = childMemory(os.Getpid())
		if boltStore != nil {
			st := boltStore.Stats()
			res.Commits, res.CommittedWrites = st.Commits-bolt0.Commits, st.Updates-bolt0.Updates
		}
		if pgStore != nil {
			st := pgStore.Stats()
			res.Notes = append(res.Notes, fmt.Sprintf("postgres store: %d steps in %d round trips; %d steps shared theirs (group commit), %d ran again alone",
				st.Steps-pg0.Steps, st.RoundTrips-pg0.RoundTrips, st.Grouped-pg0.Grouped, st.GroupAlone-pg0.GroupAlone))
		}
		for i, p := range res.Plugins {
			if c0, ok := cpu0[p.PID]; ok {
				res.Plugins[i].CPUSeconds = (cpuTime(p.PID) - c0).Seconds()
			}
		}
	}
	res.LoadAfter = loadAverage()
	res.MeasuredSeconds = lr.elapsed.Seconds()
	res.Ops = lr.ops
	res.OpsPerSec = float64(lr.ops) / lr.elapsed.Seconds()
	res.Latency = summarize(lr.total)
	for i, name := range sc.steps {
		res.Steps = append(res.Steps, StepResult{Name: name, Latency: summarize(lr.steps[i])})
	}
	res.Errors, res.ErrorSamples = lr.errors, lr.samples
	if lr.exhausted {
		res.Notes = append(res.Notes, fmt.Sprintf("the %s tokens minted ahead ran out after %.1fs of measuring; raise --pool for a longer run", thousands(int64(sc.pool)), lr.elapsed.Seconds()))
	}
	return res, nil
}

// coreStore is the store of the self-started daemon, or nil.
func (e *env) coreStore() tokenstore.Store {
	if e.core == nil {
		return nil
	}
	return e.core.Store()
}
