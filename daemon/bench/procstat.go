package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Proc is what /proc says about a process: its resident set in bytes
// (Peak is VmHWM, the high-water mark since the process started or since
// resetPeak) and, for a load run, the CPU it used while measuring.
type Proc struct {
	PID  int    `json:"pid"`
	Name string `json:"name,omitempty"`
	Peak int64  `json:"peak_rss_bytes"`
	RSS  int64  `json:"rss_bytes"`
	Anon int64  `json:"rss_anon_bytes"`
	File int64  `json:"rss_file_bytes"`
	// PSS is the proportional set size: pages shared with other processes
	// (the binary's, which a daemon and its built-in plugins all map)
	// counted in shares. Zero when the kernel does not say.
	PSS int64 `json:"pss_bytes"`
	// CPUSeconds is the CPU time used while measuring (load runs only).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// DiskWriteBytes is what the process sent to storage while measuring
	// (write_bytes of /proc/<pid>/io; load runs only).
	DiskWriteBytes int64 `json:"disk_write_bytes,omitempty"`
}

// readMemory reads pid's memory figures from /proc. It fails off Linux.
func readMemory(pid int) (Proc, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Proc{}, err
	}
	if rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		raw = append(raw, rollup...)
	}
	m := Proc{PID: pid}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmHWM":
			dst = &m.Peak
		case "VmRSS":
			dst = &m.RSS
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		case "Pss":
			dst = &m.PSS
		default:
			continue
		}
		f := strings.Fields(rest) // "12345 kB"
		if len(f) > 0 {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				*dst = kb << 10
			}
		}
	}
	return m, nil
}

// resetPeak resets pid's VmHWM to its current RSS (Linux 4.0 and later),
// so the next reading is the peak of what happens from now on. It
// reports whether the kernel took it.
func resetPeak(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// children lists the processes whose parent is pid, in pid order.
func children(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, path := range dirs {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(raw, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(raw[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			out = append(out, child)
		}
	}
	slices.Sort(out)
	return out
}

// cpuTime is the CPU time (user and system) pid has used so far. Linux
// counts it in clock ticks of 1/100 s (USER_HZ on every architecture Go
// supports there).
func cpuTime(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(raw[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// diskWrites is write_bytes of /proc/<pid>/io: the bytes the process
// caused to be written to storage so far.
func diskWrites(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// processName names a process by its command line: "plugin password" for
// a built-in plugin the daemon re-executed, else the binary's base name.
func processName(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if len(args) >= 3 && args[1] == "plugin" {
		return "plugin " + args[2]
	}
	if len(args) > 0 {
		return filepath.Base(args[0])
	}
	return ""
}

// childMemory reads the memory of each child process of pid.
func childMemory(pid int) []Proc {
	var out []Proc
	for _, c := range children(pid) {
		m, err := readMemory(c)
		if err != nil {
			continue
		}
		m.Name = processName(c)
		out = append(out, m)
	}
	return out
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() [3]float64 {
	var out [3]float64
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(raw))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}
