package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tick is the Linux USER_HZ clock tick of /proc/stat and /proc/<pid>/stat.
const tick = 10 * time.Millisecond

// cpuSnapshot is the machine's CPU time so far: in total, idle, and per
// live process.
type cpuSnapshot struct {
	total, idle int64
	procs       map[procKey]procCPU
}

// procKey identifies a process across snapshots: a pid and its start time.
type procKey struct {
	pid, start int64
}

type procCPU struct {
	name  string
	ticks int64
}

func takeCPUSnapshot() cpuSnapshot {
	s := cpuSnapshot{procs: map[procKey]procCPU{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for i, f := range strings.Fields(line)[1:] {
			n, _ := strconv.ParseInt(f, 10, 64)
			s.total += n
			if i == 3 || i == 4 { // idle, iowait
				s.idle += n
			}
		}
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(string(b[end+1:]))
		if len(fields) < 20 {
			continue
		}
		pid, _ := strconv.ParseInt(filepath.Base(filepath.Dir(path)), 10, 64)
		u, _ := strconv.ParseInt(fields[11], 10, 64)
		k, _ := strconv.ParseInt(fields[12], 10, 64)
		start, _ := strconv.ParseInt(fields[19], 10, 64)
		s.procs[procKey{pid, start}] = procCPU{name: processName(string(b[open+1 : end])), ticks: u + k}
	}
	return s
}

// processName groups kernel worker threads, whose names change with the
// work queue they serve.
func processName(comm string) string {
	if strings.HasPrefix(comm, "kworker/") {
		return "kernel workers"
	}
	return comm
}

// cpuUse is the CPU time spent between two snapshots. Processes that exited
// in between are missing from it.
type cpuUse struct {
	busy   float64 // share of all cores' time that was not idle
	byName map[string]time.Duration
}

func (s cpuSnapshot) since(before cpuSnapshot) cpuUse {
	u := cpuUse{byName: map[string]time.Duration{}}
	if d := s.total - before.total; d > 0 {
		u.busy = 1 - float64(s.idle-before.idle)/float64(d)
	}
	for k, p := range s.procs {
		if d := p.ticks - before.procs[k].ticks; d > 0 { // a new process counts from zero
			u.byName[p.name] += time.Duration(d) * tick
		}
	}
	return u
}

// top describes the busy share and the largest consumers, each per unit of
// work (per request, per report) when units > 0.
func (u cpuUse) top(n int, units int, unit string) string {
	names := make([]string, 0, len(u.byName))
	for name := range u.byName {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return int(u.byName[b] - u.byName[a]) })
	var parts []string
	for _, name := range names[:min(n, len(names))] {
		d := u.byName[name]
		if units > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f ms", name, float64(d)/float64(time.Millisecond)/float64(units)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s", name, d.Round(10*time.Millisecond)))
		}
	}
	per := ""
	if units > 0 {
		per = " per " + unit
	}
	return fmt.Sprintf("CPU busy %.0f%%; CPU time%s: %s", u.busy*100, per, strings.Join(parts, ", "))
}
