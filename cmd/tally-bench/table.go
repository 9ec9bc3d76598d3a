package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/tally-compliance/tally/config"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// keptMarker starts the hand-written part of BENCHMARKS.md, which a new run
// keeps: the findings behind the figures.
const keptMarker = "<!-- Everything below this line is written by hand and kept by tally-bench. -->"

// flatSlack is how much more a process's peak RSS may be for the largest
// report than for the smallest and still count as flat.
const flatSlack = 16 << 20

// machine describes where the bench ran.
type machine struct {
	cpus     int
	cpuModel string
	memory   string
	kernel   string
	goVer    string
	postgres string
	date     time.Time
	load     string // load averages before and after the run
}

func (b *bench) machine(ctx context.Context) machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version(), date: time.Now().UTC()}
	m.cpuModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		var n int64
		fmt.Sscanf(kb, "%d", &n)
		m.memory = fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
	}
	if v, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(v))
	}
	if b.ctl != nil {
		_ = b.ctl.QueryRow(ctx, `SHOW server_version`).Scan(&m.postgres)
	}
	m.load = fmt.Sprintf("%s before, %s after", b.loadStart, loadAvg())
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

type rendered struct {
	table    string // the Markdown table alone
	document string // BENCHMARKS.md
}

type tableRow struct {
	n                                       int
	measure, value, baseline, ratio, target string
	holds                                   string // "yes", "no" or "—"
}

func holds(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (s series) max() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

func rate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func msStr(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func secStr(v float64) string {
	switch {
	case v >= 10:
		return fmt.Sprintf("%.1f s", v)
	case v >= 1:
		return fmt.Sprintf("%.2f s", v)
	}
	return fmt.Sprintf("%.0f ms", v*1000)
}

func ratioStr(v float64) string { return fmt.Sprintf("%.2f", v) }

func (r *results) rows() []tableRow {
	var out []tableRow
	for _, c := range r.create {
		row := tableRow{n: 1, measure: fmt.Sprintf("Create (POST case-reports), c=%d", c.conc),
			value: fmt.Sprintf("%s req/s; p50 %s / p95 %s / p99 %s ms", rate(c.rate.med()), msStr(c.p50.med()), msStr(c.p95.med()), msStr(c.p99.med())),
			baseline: fmt.Sprintf("same transaction, no HTTP: %s tx/s; p50 %s / p95 %s / p99 %s ms",
				rate(c.baseRate.med()), msStr(c.bp50.med()), msStr(c.bp95.med()), msStr(c.bp99.med())),
			ratio: ratioStr(c.ratio.med()), target: "—", holds: "—"}
		if c.conc == 16 {
			// Issue 16: ≥ 0.8 of the baseline's rate, p99 ≤ 1.3× its p99.
			row.target = "≥ 0.80, p99 ≤ 1.3× the baseline's"
			row.holds = holds(c.ratio.med() >= 0.80 && c.p99.med() <= 1.3*c.bp99.med())
		}
		out = append(out, row)
	}
	var oneM *readyRow
	for _, rr := range r.ready {
		if rr.size == 1_000_000 {
			oneM = rr
		}
	}
	for _, rr := range r.ready {
		line := tableRow{n: 2, measure: fmt.Sprintf("Time to ready, %s transactions, line items", countName(rr.size)),
			value:    secStr(rr.line.med()),
			baseline: fmt.Sprintf("COPY (same SELECT) TO STDOUT: %s", secStr(rr.copy.med())),
			ratio:    ratioStr(rr.lineRatio.med()), target: "—", holds: "—"}
		sub := tableRow{n: 2, measure: fmt.Sprintf("Time to ready, %s transactions, subtotals only", countName(rr.size)),
			value:    secStr(rr.sub.med()),
			baseline: fmt.Sprintf("same GROUP BY: %s", secStr(rr.group.med())),
			ratio:    ratioStr(rr.subRatio.med()), target: "—", holds: "—"}
		switch rr.size {
		case 10_000:
			over := rr.line.med() - rr.copy.med()
			line.target = "≤ COPY + 25 ms"
			line.holds = holds(over <= 0.025)
			line.ratio += fmt.Sprintf(" (COPY + %s)", secStr(over))
		case 1_000_000:
			line.target, line.holds = "≤ 0.9× COPY", holds(rr.lineRatio.med() <= 0.9)
			limit := 1.5*rr.group.med() + 0.1
			sub.target = fmt.Sprintf("≤ 1.5× GROUP BY + 100 ms (%s)", secStr(limit))
			sub.holds = holds(rr.sub.med() <= limit)
		case 10_000_000:
			if oneM != nil {
				x := rr.line.med() / oneM.line.med()
				line.target = "≤ 11× the 1M report"
				line.holds = holds(x <= 11)
				line.ratio += fmt.Sprintf(" (%.1f× the 1M report)", x)
			}
		}
		out = append(out, line, sub)
	}
	if n := len(r.ready); n > 0 {
		big, small := r.ready[n-1], r.ready[0]
		var others []string
		for _, rr := range r.ready[:n-1] {
			others = append(others, fmt.Sprintf("%s: %.1f MiB", countName(rr.size), rr.workerHWM.max()/(1<<20)))
		}
		// Flat: ten times the rows of the next smaller report add no more
		// than flatSlack.
		prev := small
		if n > 1 {
			prev = r.ready[n-2]
		}
		grow := big.workerHWM.max() - prev.workerHWM.max()
		target := fmt.Sprintf("< 128 MiB, flat (≤ +16 MiB over %s)", countName(prev.size))
		ok := big.workerHWM.max() < 128<<20 && grow <= flatSlack
		if big.size >= 10_000_000 {
			// The 10M report's own target is < 128 MiB (issue 16).
			target = fmt.Sprintf("< 128 MiB (+%.1f MiB over %s)", grow/(1<<20), countName(prev.size))
			ok = big.workerHWM.max() < 128<<20
		}
		out = append(out, tableRow{n: 3, measure: fmt.Sprintf("Worker peak RSS (VmHWM), %s line items", countName(big.size)),
			value:    fmt.Sprintf("%.1f MiB", big.workerHWM.max()/(1<<20)),
			baseline: "same worker, smaller reports: " + strings.Join(others, ", "),
			ratio:    ratioStr(big.workerHWM.max() / prev.workerHWM.max()),
			target:   target, holds: holds(ok)})
	}
	for _, s := range r.small {
		row := tableRow{n: 4, measure: fmt.Sprintf("Small reports (%s transactions each), %d worker process(es)", countName(s.rows), s.workers),
			value: fmt.Sprintf("%s reports/s", rate(s.rate.med())),
			baseline: fmt.Sprintf("the same work without River and HTTP (scope read, PUT, one commit), %d at once: %s reports/s; River no-op jobs, %d client(s), same fetch settings: %s jobs/s",
				s.workers*config.DefaultSmallConcurrency, rate(s.direct.med()), s.workers, rate(s.noop.med())),
			ratio:  fmt.Sprintf("%s direct; %s no-op", ratioStr(s.directRatio.med()), ratioStr(s.ratio.med())),
			target: "—", holds: "—"}
		if s.workers == 2 {
			row.target = "≥ 0.70 direct and ≥ 0.50 no-op"
			row.holds = holds(s.directRatio.med() >= 0.70 && s.ratio.med() >= 0.50)
		}
		out = append(out, row)
	}
	if d := r.download; d != nil {
		out = append(out, tableRow{n: 5, measure: fmt.Sprintf("Download, %s report (%.0f MB) through the API", countName(d.size), float64(d.bytes)/1e6),
			value:    fmt.Sprintf("%s MB/s", rate(d.api.med())),
			baseline: fmt.Sprintf("direct MinIO GET of the object: %s MB/s", rate(d.direct.med())),
			ratio:    ratioStr(d.ratio.med()), target: "≥ 0.90", holds: holds(d.ratio.med() >= 0.90)})
		grow := d.apiHWM.max() - d.apiSmallHWM.max()
		out = append(out, tableRow{n: 5, measure: "API peak RSS (VmHWM) during that download",
			value:    fmt.Sprintf("%.1f MiB", d.apiHWM.max()/(1<<20)),
			baseline: fmt.Sprintf("downloading the %s report: %.1f MiB (idle before: %.1f MiB)", countName(d.smallSize), d.apiSmallHWM.max()/(1<<20), mib(d.apiIdle)),
			ratio:    ratioStr(d.apiHWM.max() / d.apiSmallHWM.max()),
			target:   "flat (≤ +16 MiB)", holds: holds(grow <= flatSlack)})
	}
	if p := r.poll; p != nil {
		out = append(out, tableRow{n: 6, measure: fmt.Sprintf("Polling: GET list with If-None-Match (304), c=%d", p.conc),
			value:    fmt.Sprintf("%s req/s; p99 %s ms", rate(p.rate.med()), msStr(p.p99.med())),
			baseline: fmt.Sprintf("the list query alone (db.ListReports): %s q/s; p99 %s ms", rate(p.baseRate.med()), msStr(p.bp99.med())),
			ratio:    ratioStr(p.ratio.med()), target: "—", holds: "—"})
	}
	if p := r.pickup; p != nil {
		out = append(out, tableRow{n: 7, measure: "Pickup: insert → job start (idle fleet)",
			value:    fmt.Sprintf("p50 %s / p99 %s ms", msStr(p.p50.med()), msStr(p.p99.med())),
			baseline: fmt.Sprintf("River no-op job, same fetch settings: p50 %s / p99 %s ms", msStr(p.baseP50.med()), msStr(p.baseP99.med())),
			ratio:    ratioStr(p.p50.med() / p.baseP50.med()), target: "p50 < 20 ms", holds: holds(p.p50.med() < 20)})
	}
	out = append(out, r.evidenceRows()...)
	return append(out, r.waitRows()...)
}

// waitRows are rows 12 and 13 (issue 14).
func (r *results) waitRows() []tableRow {
	var out []tableRow
	for _, w := range r.wait {
		row := tableRow{n: 12, measure: fmt.Sprintf("Prefer: wait, %d clients waiting, commit → answer, ready %s", waitClients, w.mode),
			value:    fmt.Sprintf("p50 %s / p95 %s / p99 %s / max %s ms", msStr(w.p50.med()), msStr(w.p95.med()), msStr(w.p99.med()), msStr(w.max.med())),
			baseline: fmt.Sprintf("LISTEN in the bench, same commits: p50 %s / p99 %s ms", msStr(w.notifyP50.med()), msStr(w.notifyP99.med())),
			ratio:    ratioStr(w.ratio.med()), target: "—", holds: "—"}
		if w.mode == "one by one" {
			row.target, row.holds = "p50 < 20 ms, p99 < 100 ms", holds(w.p50.med() < 20 && w.p99.med() < 100)
		}
		out = append(out, row)
	}
	if l := r.listAll; l != nil {
		out = append(out, tableRow{n: 13, measure: fmt.Sprintf("API peak RSS (VmHWM), unpaged list of %s reports (%.0f MB)", countName(int64(l.n)), float64(l.bodyBytes)/1e6),
			value:    fmt.Sprintf("%.1f MiB (idle before: %.1f MiB); %s; 304: %s ms", l.hwm.max()/(1<<20), l.idle.med()/(1<<20), secStr(l.secs.med()), msStr(l.notModified.med())),
			baseline: fmt.Sprintf("the same reports in pages of 200 (Link): %.1f MiB; %s", l.pagedHWM.max()/(1<<20), secStr(l.pagedSecs.med())),
			ratio:    ratioStr(l.hwm.max() / l.pagedHWM.max()), target: "flat (≤ +16 MiB over pages)",
			holds: holds(l.hwm.max()-l.pagedHWM.max() <= flatSlack)})
	}
	return out
}

// evidenceRows are rows 8 to 11 (issues 12 and 13).
func (r *results) evidenceRows() []tableRow {
	var out []tableRow
	if c := r.chain; c != nil {
		out = append(out, tableRow{n: 8, measure: fmt.Sprintf("Create with the activity chain sequencer running (jobs.CreateReport), c=%d", c.conc),
			value:    fmt.Sprintf("%s tx/s; p99 %s ms", rate(c.chained.med()), msStr(c.cp99.med())),
			baseline: fmt.Sprintf("same transaction, sequencer stopped: %s tx/s; p99 %s ms", rate(c.unchained.med()), msStr(c.up99.med())),
			ratio:    ratioStr(c.ratio.med()), target: "≥ 0.90", holds: holds(c.ratio.med() >= 0.90)})
	}
	if e := r.evidence; e != nil {
		out = append(out, tableRow{n: 9, measure: fmt.Sprintf("Manifest signing (evidence.SignManifest, the %s report's manifest, %d bytes)", countName(e.size), e.manifestBytes),
			value:    fmt.Sprintf("%.1f µs", e.sign.med()),
			baseline: fmt.Sprintf("ed25519.Sign of the same canonical bytes: %.1f µs", e.rawSign.med()),
			ratio:    ratioStr(e.sign.med() / e.rawSign.med()), target: "—", holds: "—"})
		out = append(out, tableRow{n: 9, measure: fmt.Sprintf("Offline verify (`tallyctl verify` logic), %s report (%.0f MB)", countName(e.size), float64(e.fileBytes)/1e6),
			value:    secStr(e.verify.med()),
			baseline: fmt.Sprintf("SHA-256 of the file alone: %s", secStr(e.digest.med())),
			ratio:    ratioStr(e.verify.med() / e.digest.med()), target: "—", holds: "—"})
	}
	for i, f := range r.formats {
		last := i == len(r.formats)-1 && f.size >= 1_000_000
		t := tableRow{n: 10, measure: fmt.Sprintf("Time to ready, XLSX, %s transactions, line items (%.0f MB)", countName(f.size), float64(f.xlsxBytes)/1e6),
			value:    secStr(f.xlsx.med()),
			baseline: fmt.Sprintf("CSV of the same case, same run: %s", secStr(f.csv.med())),
			ratio:    ratioStr(f.ratio.med()), target: "—", holds: "—"}
		m := tableRow{n: 10, measure: fmt.Sprintf("Worker peak RSS (VmHWM), XLSX, %s transactions", countName(f.size)),
			value:    fmt.Sprintf("%.1f MiB", f.xlsxHWM.max()/(1<<20)),
			baseline: fmt.Sprintf("CSV of the same case: %.1f MiB", f.csvHWM.max()/(1<<20)),
			ratio:    ratioStr(f.xlsxHWM.max() / f.csvHWM.max()), target: "—", holds: "—"}
		if last {
			t.target, t.holds = "≤ 3× CSV", holds(f.ratio.med() <= 3)
			m.target, m.holds = "< 256 MiB", holds(f.xlsxHWM.max() < 256<<20)
		}
		out = append(out, t, m)
	}
	if p := r.pdf; p != nil {
		out = append(out, tableRow{n: 10, measure: fmt.Sprintf("Time to ready, PDF attestation, %s transactions (%.0f KB)", countName(p.size), float64(p.pdfBytes)/1e3),
			value:    secStr(p.pdf.med()),
			baseline: fmt.Sprintf("same GROUP BY: %s", secStr(p.group.med())),
			ratio:    ratioStr(p.pdf.med() / p.group.med()), target: "≤ 2 s", holds: holds(p.pdf.med() <= 2)})
	}
	if g := r.gzip; g != nil {
		out = append(out, tableRow{n: 11, measure: fmt.Sprintf("Download, %s CSV (%.0f MB) with Accept-Encoding: gzip", countName(g.size), float64(g.fileBytes)/1e6),
			value: fmt.Sprintf("%s MB/s of CSV; %.1f MB on the wire (compression ratio %.1f : 1)",
				rate(g.gz.med()), float64(g.wireBytes)/1e6, float64(g.fileBytes)/float64(max(g.wireBytes, 1))),
			baseline: fmt.Sprintf("same download uncompressed: %s MB/s", rate(g.plain.med())),
			ratio:    ratioStr(g.ratio.med()), target: "—", holds: "—"})
	}
	return out
}

func (r *results) markdown(m machine, o *options) rendered {
	var t strings.Builder
	t.WriteString("| # | Measure | Tally | Baseline, same run | Ratio | Target | Holds |\n")
	t.WriteString("|---|---|---|---|---|---|---|\n")
	for _, row := range r.rows() {
		fmt.Fprintf(&t, "| %d | %s | %s | %s | %s | %s | %s |\n", row.n, row.measure, row.value, row.baseline, row.ratio, row.target, row.holds)
	}

	var d strings.Builder
	d.WriteString("# Benchmarks\n\n")
	d.WriteString("Written by `make bench` (`cmd/tally-bench`). Each figure is the median of the runs; each run measures\n")
	d.WriteString("the figure and its baseline back to back on the same machine, and the ratio is the median of\n")
	d.WriteString("the runs' ratios (Tally ÷ baseline: above 1 is slower for times, faster for rates).\n\n")
	fmt.Fprintf(&d, "- Date: %s\n", m.date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&d, "- Machine: %d CPU cores (%s), %s memory, %s\n", m.cpus, orUnknown(m.cpuModel), orUnknown(m.memory), orUnknown(m.kernel))
	fmt.Fprintf(&d, "- Load averages (1, 5, 15 min; other work shares the cores): %s\n", m.load)
	fmt.Fprintf(&d, "- Software: %s, PostgreSQL %s, MinIO (scripts/services.sh), everything on loopback\n", m.goVer, orUnknown(m.postgres))
	fmt.Fprintf(&d, "- Command: `%s` (%d runs per figure%s)\n", command(o), o.runs, map[bool]string{true: ", quick mode", false: ""}[o.quick])
	d.WriteString("- Processes: the real `tally-api` and `tally-worker` binaries, built by the bench, with the default\n")
	d.WriteString("  configuration (worker concurrency 4, large-queue concurrency 1, fetch poll 1 s) except the per-user\n")
	d.WriteString("  create limit, which is lifted; logs at info level to files.\n\n")
	d.WriteString(t.String())
	d.WriteString(r.scaling(m))
	d.WriteString("\n## How each row is measured\n\n")
	fmt.Fprintf(&d, "1. **Create**: closed loop for %s per phase (after %s of warm-up) at each concurrency, one auditor token,\n", o.loadFor, o.warmup)
	d.WriteString("   no `Idempotency-Key`. No worker runs during this row, so none competes for the two cores, but the\n")
	d.WriteString("   bench runs the activity chain sequencer as every worker does (`db.ChainPending` every second); the queued\n")
	d.WriteString("   jobs are deleted afterwards and the tables vacuumed and analyzed, as autovacuum would. Baseline:\n")
	d.WriteString("   the handler's transaction, `jobs.CreateReport` (clock and case in one read, the case locked `FOR SHARE`;\n")
	d.WriteString("   scope estimate; River `InsertTx` with tally-api's FetchCooldown of 5 ms; report row; `report.created`),\n")
	d.WriteString("   in a Go loop on a pool of the API's size.\n")
	d.WriteString("2. **Time to ready**: POST, then GET the list with `If-None-Match` every 10 ms until the report is\n")
	fmt.Fprintf(&d, "   `ready`, with one idle worker; each POST comes %s after the previous step. Line-items cases carry\n", pickupSpacing)
	d.WriteString("   every disclosure flag. Baselines: `COPY (db.ScopeOrderedSQL with its arguments inlined as\n")
	d.WriteString("   literals) TO STDOUT` read to the end, and `db.ScopeGroupedSQL` read to the end, planned with its\n")
	d.WriteString("   own parameters.\n")
	d.WriteString("3. **Worker memory**: VmHWM of the worker process, reset (`/proc/<pid>/clear_refs` = 5) before each\n")
	d.WriteString("   line-items report and read after it; the largest over the runs. Flat means the largest report\n")
	d.WriteString("   peaks at most 16 MiB above the report with ten times fewer rows.\n")
	fmt.Fprintf(&d, "4. **Small reports**: %d line-items reports of %d transactions each are queued with no worker running;\n", o.smallReports, o.smallRows)
	d.WriteString("   then 1 or 2 worker processes start, and the rate counts from the first report's `started_at` to the\n")
	d.WriteString("   last one's `completed_at`. Baseline: as many River no-op jobs, worked by as many River clients in the\n")
	d.WriteString("   bench process with a worker's fetch settings (MaxWorkers 4, FetchCooldown 20 ms, FetchPollInterval 1 s),\n")
	d.WriteString("   from the first `attempted_at` to the last `finalized_at`.\n")
	d.WriteString("5. **Download**: the largest line-items report through the API (bearer token, `report.downloaded`\n")
	d.WriteString("   event, streaming from MinIO) vs a direct GET of the same object (minio-go `Core.GetObject`, the\n")
	d.WriteString("   response body read as it is), both read by the bench into a 256 KiB buffer, three of each per\n")
	d.WriteString("   run, interleaved. API memory: VmHWM reset before each download, compared with downloading the\n")
	d.WriteString("   smallest report.\n")
	d.WriteString("6. **Polling**: closed loop at concurrency 64 of GET list (limit 50) with the current ETag, every answer\n")
	d.WriteString("   a 304. Baseline: `db.ListReports` alone at the same concurrency on a pool of the API's size.\n")
	fmt.Fprintf(&d, "7. **Pickup**: %d reports per run, created one at a time through the API, each after the previous one is\n", o.pickups)
	fmt.Fprintf(&d, "   ready plus %s; latency is `river_job.attempted_at − created_at` (created_at is the insert\n", pickupSpacing)
	d.WriteString("   transaction's start, so the figure includes the rest of that transaction). Baseline: River no-op\n")
	d.WriteString("   jobs inserted the same way, worked by a River client with the same fetch settings.\n")
	d.WriteString("8. **Chained activity event**: `jobs.CreateReport` (the create row's baseline) in a closed loop at\n")
	fmt.Fprintf(&d, "   concurrency 16 for %s per phase, with the activity chain sequencer running in the bench as a worker\n", o.loadFor)
	d.WriteString("   runs it (`db.ChainPending` then `db.ChainLag` every `TALLY_CHAIN_INTERVAL`, 1 s, on a connection of\n")
	d.WriteString("   its own), then with it stopped, the order alternating per run; before each phase the sequencer\n")
	d.WriteString("   drains what the previous one left (untimed). No worker runs.\n")
	fmt.Fprintf(&d, "9. **Evidence**: signing is `evidence.SignManifest` of the largest report's manifest (as served by the API),\n")
	fmt.Fprintf(&d, "   %d times with an ephemeral key, vs `ed25519.Sign` of the same canonical bytes. Verify is what\n", signLoops)
	d.WriteString("   `tallyctl verify` does (`evidence.VerifySigned` with the served JWK set, then `evidence.VerifyFile`)\n")
	d.WriteString("   on the report file downloaded to a local file (in the page cache), vs SHA-256 of that file alone.\n")
	d.WriteString("10. **XLSX and PDF**: as row 2, with `transaction_summary_xlsx` on the line-items case, each run timing\n")
	d.WriteString("   the CSV of the same case right before or after it (order alternating), worker VmHWM reset before each;\n")
	d.WriteString("   `case_attestation` (PDF, subtotals only) on the largest case vs the same GROUP BY.\n")
	d.WriteString("11. **gzip**: the largest CSV through the API with `Accept-Encoding: gzip`, the compressed body read as it\n")
	d.WriteString("   arrives (not decompressed), vs the same download without it, three of each per run, interleaved;\n")
	d.WriteString("   MB/s counts the uncompressed file's bytes. Once per bench, untimed, the gzip body is decompressed and\n")
	d.WriteString("   its SHA-256 checked against the report's.\n")
	fmt.Fprintf(&d, "12. **Prefer: wait**: %d reports moved to `running`, then one `GET .../reports/{id}` with `Prefer: wait=30`\n", waitClients)
	d.WriteString("   each, from its own connection, started in batches of 50 until the API's `tally_report_waits_in_progress`\n")
	fmt.Fprintf(&d, "   gauge counts them all (per-user cap lifted to %d); then the bench marks each ready with `db.MarkReportReady` in a\n", 2*waitClients)
	fmt.Fprintf(&d, "   transaction of its own, %s apart (one by one), or all %d in one transaction (burst). Latency: the whole\n", waitSpacing, waitClients)
	d.WriteString("   answer received − `Commit` returned, in the bench. Baseline: a LISTEN connection in the bench, same\n")
	d.WriteString("   commits: notification received − `Commit` returned. No worker runs.\n")
	fmt.Fprintf(&d, "13. **Unpaged list**: %d ready reports inserted by one `INSERT … SELECT generate_series`, then\n", listReports)
	d.WriteString("   `GET .../reports` without `limit`, the array decoded as it arrives; the API's VmHWM reset before and\n")
	d.WriteString("   read after; compared with reading the same reports in pages of 200 following `Link` (the same reset),\n")
	d.WriteString("   order alternating; then one `If-None-Match` request timed (the list's stamp query, no body).\n")
	if len(r.notes) > 0 {
		d.WriteString("\n## Notes from this run\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&d, "- %s\n", n)
		}
	}
	r.appendRunNotes(&d)
	if earlier := earlierRuns(o.out); earlier != "" {
		d.WriteString("\n" + earlier)
	}
	if kept := keptSection(o.out); kept != "" {
		d.WriteString("\n" + kept)
	} else {
		d.WriteString("\n" + keptMarker + "\n")
	}
	return rendered{table: t.String(), document: d.String()}
}

// scaling is the scaling table: time to ready against rows, and small
// reports against worker processes, with the machine's cores beside them.
func (r *results) scaling(m machine) string {
	if len(r.ready) == 0 && len(r.small) == 0 {
		return ""
	}
	var d strings.Builder
	fmt.Fprintf(&d, "\n### Scaling, on %d CPU cores\n\n", m.cpus)
	if len(r.ready) > 0 {
		d.WriteString("| Transactions (line items) | Time to ready | µs per row | COPY of the same SELECT | Worker peak RSS |\n|---|---|---|---|---|\n")
		for _, rr := range r.ready {
			fmt.Fprintf(&d, "| %s | %s | %.1f | %s | %.1f MiB |\n", countName(rr.size), secStr(rr.line.med()),
				rr.line.med()*1e6/float64(rr.size), secStr(rr.copy.med()), rr.workerHWM.max()/(1<<20))
		}
		d.WriteString("\n")
	}
	if len(r.small) > 0 {
		d.WriteString("| Worker processes (4 jobs each) | Small reports/s (1k rows) | Same work without River and HTTP | River no-op jobs/s |\n|---|---|---|---|\n")
		for _, s := range r.small {
			fmt.Fprintf(&d, "| %d | %s | %s | %s |\n", s.workers, rate(s.rate.med()), rate(s.direct.med()), rate(s.noop.med()))
		}
	}
	return d.String()
}

// appendRunNotes lists errors seen during load phases and the sizes read.
func (r *results) appendRunNotes(d *strings.Builder) {
	var notes []string
	for _, c := range r.create {
		if c.errs > 0 || c.baseErrs > 0 {
			notes = append(notes, fmt.Sprintf("create c=%d: %d API errors (first: %v), %d baseline errors (first: %v)",
				c.conc, c.errs, c.firstErr, c.baseErrs, c.firstBaseErr))
		}
	}
	for _, w := range r.wait {
		if w.errs > 0 || w.answeredWithoutAnyChange > 0 {
			notes = append(notes, fmt.Sprintf("wait, %s: %d errors (first: %v); %d answered before their report was ready",
				w.mode, w.errs, w.firstErr, w.answeredWithoutAnyChange))
		}
	}
	if r.poll != nil && r.poll.errs > 0 {
		notes = append(notes, fmt.Sprintf("polling: %d errors (first: %v)", r.poll.errs, r.poll.firstErr))
	}
	for _, rr := range r.ready {
		notes = append(notes, fmt.Sprintf("%s transactions: report file %.1f MB, COPY output %.1f MB; the worker used %.2f s of CPU for the line-items report (ready in %s)",
			countName(rr.size), float64(rr.fileBytes)/1e6, float64(rr.copyBytes)/1e6, rr.workerCPU.med(), secStr(rr.line.med())))
	}
	if r.pickup != nil {
		notes = append(notes, fmt.Sprintf("pickup: the report's own started_at (after the worker loads and marks it running) is p50 %s ms after created_at",
			msStr(r.pickup.start50.med())))
	}
	if len(notes) == 0 {
		return
	}
	d.WriteString("\nRun details:\n\n")
	for _, n := range notes {
		fmt.Fprintf(d, "- %s\n", n)
	}
}

// earlierHeading heads the dated history of earlier runs, newest first.
const earlierHeading = "## Earlier runs\n"

// earlierRuns returns the history section for a new file: the run in the
// existing file (its description and table, under a heading with its date)
// followed by the runs that file already kept.
func earlierRuns(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	doc := string(b)
	if i := strings.Index(doc, keptMarker); i >= 0 {
		doc = doc[:i]
	}
	var older string
	if i := strings.Index(doc, earlierHeading); i >= 0 {
		older = strings.TrimSpace(doc[i+len(earlierHeading):])
		doc = doc[:i]
	}
	start := strings.Index(doc, "- Date: ")
	end := strings.Index(doc, "\n## How each row is measured")
	if start < 0 || end < start {
		return ""
	}
	block := strings.TrimSpace(doc[start:end])
	date, _, _ := strings.Cut(strings.TrimPrefix(block, "- Date: "), "\n")
	var out strings.Builder
	out.WriteString(earlierHeading + "\n")
	fmt.Fprintf(&out, "### %s\n\n%s\n", date, block)
	if older != "" {
		out.WriteString("\n" + older + "\n")
	}
	return out.String()
}

// keptSection returns the hand-written part of an existing file, from the marker on.
func keptSection(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	i := strings.Index(string(b), keptMarker)
	if i < 0 {
		return ""
	}
	return string(b[i:])
}

func command(o *options) string {
	var args []string
	if o.quick {
		args = append(args, "-quick")
	}
	if len(o.only) > 0 {
		var rows []string
		for n := 1; n <= lastRow; n++ {
			if o.only[n] {
				rows = append(rows, strconv.Itoa(n))
			}
		}
		args = append(args, "-only "+strings.Join(rows, ","))
	}
	if o.runs != 3 {
		args = append(args, fmt.Sprintf("-runs %d", o.runs))
	}
	if o.large {
		args = append(args, "-large")
	}
	if o.workerBin != "" {
		args = append(args, "-worker-bin "+o.workerBin)
	}
	if o.apiBin != "" {
		args = append(args, "-api-bin "+o.apiBin)
	}
	if len(args) == 0 {
		return "make bench"
	}
	return `make bench BENCH_ARGS="` + strings.Join(args, " ") + `"`
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
