package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tally-compliance/tally/db"
)

// verdict is the final table and the problems found.
type verdict struct {
	rows     [][2]string
	problems []string
}

func (v *verdict) add(metric, value string) { v.rows = append(v.rows, [2]string{metric, value}) }

func (v *verdict) problem(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

func (v *verdict) print(w io.Writer) {
	result := "PASS"
	if len(v.problems) > 0 {
		result = fmt.Sprintf("FAIL (%d problems)", len(v.problems))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| check | result |")
	fmt.Fprintln(w, "|---|---|")
	for _, r := range v.rows {
		fmt.Fprintf(w, "| %s | %s |\n", r[0], strings.ReplaceAll(r[1], "|", `\|`))
	}
	fmt.Fprintf(w, "| **result** | **%s** |\n", result)
	if len(v.problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		for i, p := range v.problems {
			if i == 30 {
				fmt.Fprintf(w, "- ... and %d more\n", len(v.problems)-30)
				break
			}
			fmt.Fprintf(w, "- %s\n", p)
		}
	}
	fmt.Fprintln(w)
}

// countsString prints a map of counts in a stable order: "a×3, b×1".
func countsString[K comparable](m map[K]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	byKey := map[string]int{}
	for k, n := range m {
		s := fmt.Sprint(k)
		keys = append(keys, s)
		byKey[s] = n
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, byKey[k])
	}
	return strings.Join(parts, ", ")
}

type reportRow struct {
	ID        string
	Status    string
	ObjectKey *string
	SHA256    *string
	SizeBytes *int64
	ErrorCode *string
	ErrorMsg  *string
}

type jobRow struct {
	ReportID string
	ID       int64
	State    string
	Attempt  int
	Errors   int
	Rescued  int
}

// verify checks the end state and builds the table.
func (c *chaos) verify(ctx context.Context) (*verdict, error) {
	v := &verdict{}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c.mu.Lock()
	ids, createErrs := c.ids, c.createErrs
	kills, restarts, crashes := c.kills, c.restarts, slices.Clone(c.crashes)
	minioDown, minioUp, pgOut, pgErr := c.minioDown, c.minioUp, c.pgOutage, c.pgOutageErr
	pgCrash, extraIDs, zombie := c.pgCrash, slices.Clone(c.extraIDs), c.zombieRes
	c.mu.Unlock()
	calls := c.client.snapshot()
	rel := c.rel
	// The window in which PostgreSQL was unreachable.
	pgStart, pgEnd := pgOut.start, pgOut.end
	if c.cluster != nil {
		pgStart, pgEnd = pgCrash.killed, pgCrash.ready
	}

	// Creations.
	created := map[string]bool{}
	for i, id := range ids {
		if id != "" {
			created[id] = true
		} else if createErrs[i] != nil {
			v.problem("report %d (%s) was never created: %v", i, c.specs[i].kind, createErrs[i])
		}
	}
	createAnswers := map[int]int{}
	for _, cl := range calls {
		if cl.op == "create" {
			createAnswers[cl.status]++
		}
	}
	for _, id := range extraIDs {
		created[id] = true
	}
	extra := ""
	if len(extraIDs) > 0 {
		extra = fmt.Sprintf(" (+%d by the zombie phase)", len(extraIDs))
	}
	v.add("reports created over HTTP (one Idempotency-Key each, retried on 503/429)",
		fmt.Sprintf("%d / %d%s; answers: %s", len(created)-len(extraIDs), c.opts.reports, extra, countsString(createAnswers)))
	kinds := map[string]int{}
	for _, s := range c.specs {
		kinds[s.kind]++
	}
	v.add("report mix", countsString(kinds))
	v.add("settings", fmt.Sprintf("%d transactions; workers: 2 processes × (reports %d + reports_large 1), TALLY_JOB_TIMEOUT=%s, TALLY_RESCUE_STUCK_JOBS_AFTER=%s, TALLY_JOB_MAX_ATTEMPTS=%d; seed %d",
		c.tenant.Transactions, c.opts.concurrency, c.opts.jobTimeout, c.opts.rescueAfter, c.opts.maxAttempts, c.opts.seed))

	// Report rows.
	rows, err := c.pool.Query(ctx, `SELECT id, status, object_key, sha256, size_bytes, error_code, error_message FROM reports`)
	if err != nil {
		return nil, err
	}
	reports, err := pgx.CollectRows(rows, pgx.RowToStructByPos[reportRow])
	if err != nil {
		return nil, err
	}
	byStatus := map[string]int{}
	readyByKey := map[string]reportRow{}
	var ready []reportRow
	for _, r := range reports {
		byStatus[r.Status]++
		if !created[r.ID] {
			v.problem("report %s exists but no create answered with it (a duplicate of a retried create?)", r.ID)
		}
		switch {
		case r.Status == db.ReportReady && r.ObjectKey != nil:
			ready = append(ready, r)
			readyByKey[*r.ObjectKey] = r
		case r.Status == db.ReportReady:
			v.problem("report %s is ready without an object key", r.ID)
		default:
			v.problem("report %s ended %s (%s: %s)", r.ID, r.Status, deref(r.ErrorCode), deref(r.ErrorMsg))
		}
	}
	v.add("report rows in the database", fmt.Sprintf("%d (%s)", len(reports), countsString(byStatus)))
	if len(reports) != len(created) {
		v.problem("%d report rows, %d reports created", len(reports), len(created))
	}

	// Exactly one report.generated event per ready report.
	generated := map[string]int{}
	rows, err = c.pool.Query(ctx, `SELECT report_id, count(*) FROM activity_events WHERE kind = $1 GROUP BY report_id`, db.EventReportGenerated)
	if err != nil {
		return nil, err
	}
	var rid string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&rid, &n}, func() error { generated[rid] = n; return nil }); err != nil {
		return nil, err
	}
	duplicates, missingEvents := 0, 0
	for _, r := range reports {
		switch g := generated[r.ID]; {
		case r.Status == db.ReportReady && g == 0:
			missingEvents++
			v.problem("report %s is ready without a report.generated event", r.ID)
		case g > 1:
			duplicates += g - 1
			v.problem("report %s has %d report.generated events: generated more than once", r.ID, g)
		case r.Status != db.ReportReady && g > 0:
			v.problem("report %s is %s but has a report.generated event", r.ID, r.Status)
		}
	}
	v.add("report.generated events", fmt.Sprintf("%d; duplicates %d, missing %d", sumValues(generated), duplicates, missingEvents))

	// One job per report, completed.
	rows, err = c.pool.Query(ctx, `SELECT args->>'report_id', id, state::text, attempt, coalesce(array_length(errors, 1), 0),
		(SELECT count(*) FROM unnest(errors) e WHERE e->>'error' LIKE 'Stuck job rescued%')::int
		FROM river_job WHERE kind = 'generate_report'`)
	if err != nil {
		return nil, err
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	if err != nil {
		return nil, err
	}
	jobsOf := map[string][]jobRow{}
	jobStates := map[string]int{}
	retried, rescued, maxAttempt, totalErrors := 0, 0, 0, 0
	for _, j := range jobs {
		jobsOf[j.ReportID] = append(jobsOf[j.ReportID], j)
		jobStates[j.State]++
		if j.Attempt > 1 {
			retried++
		}
		rescued += j.Rescued
		totalErrors += j.Errors
		maxAttempt = max(maxAttempt, j.Attempt)
	}
	for _, r := range reports {
		js := jobsOf[r.ID]
		if len(js) != 1 {
			v.problem("report %s has %d jobs, want 1", r.ID, len(js))
			continue
		}
		if r.Status == db.ReportReady && js[0].State != "completed" {
			v.problem("report %s is ready but its job %d is %s", r.ID, js[0].ID, js[0].State)
		}
	}
	v.add("generate_report jobs", fmt.Sprintf("%d (%s); %d ran more than once (max attempt %d, %d errors recorded, %d rescues of killed runs)",
		len(jobs), countsString(jobStates), retried, maxAttempt, totalErrors, rescued))

	// Chaos that happened.
	v.add("worker kills (kill -9, random worker, restarted 1 s later)", fmt.Sprintf("%d; restarts %d", kills, restarts))
	// A worker started while PostgreSQL or MinIO is down exits at once
	// (tally-worker checks both at start) and is started again. Any other
	// exit is a problem.
	startFailures := map[string]int{}
	for _, cr := range crashes {
		switch {
		case strings.Contains(cr, "tally-worker: connecting to the database"),
			strings.Contains(cr, "tally-worker: worker: pinging database"):
			startFailures["PostgreSQL unreachable"]++
		case strings.Contains(cr, "tally-worker: checking the object store"):
			startFailures["MinIO unreachable"]++
		default:
			v.add("process exit not caused by a kill", cr)
			v.problem("process exited on its own: %s", cr)
		}
	}
	v.add("restarted workers that exited at start because a dependency was down (started again)", countsString(startFailures))
	minioDesc := "did not happen"
	if !minioDown.IsZero() {
		minioDesc = fmt.Sprintf("SIGKILL at %s, restarted (same port and data) and ready at %s: down %s",
			rel(minioDown), rel(minioUp), minioUp.Sub(minioDown).Round(100*time.Millisecond))
		if minioUp.IsZero() {
			minioDesc = fmt.Sprintf("SIGKILL at %s, never came back", rel(minioDown))
			v.problem("MinIO did not come back after the outage")
		}
	} else {
		v.problem("the MinIO outage did not happen")
	}
	v.add("MinIO outage", minioDesc)
	pgDesc := "did not happen"
	switch {
	case pgErr != nil:
		pgDesc = "failed: " + pgErr.Error()
		v.problem("PostgreSQL outage: %v", pgErr)
	case c.cluster != nil && !pgCrash.ready.IsZero():
		pgDesc = fmt.Sprintf("private cluster (initdb, own port): SIGKILL of the postmaster (pid %d, %d server processes) at %s; %d of them alive once it was gone, all gone %s after the kill (%d killed by the run); restarted at %s, crash recovery, accepting connections at %s: down %s. Log: %s",
			pgCrash.postmaster, pgCrash.children, rel(pgCrash.killed), pgCrash.orphans, pgCrash.orphansFor.Round(10*time.Millisecond), pgCrash.orphansKil,
			rel(pgCrash.restarted), rel(pgCrash.ready), pgCrash.ready.Sub(pgCrash.killed).Round(100*time.Millisecond),
			strings.Join(pgCrash.recovery, " / "))
		if !slices.ContainsFunc(pgCrash.recovery, func(l string) bool { return strings.Contains(l, "automatic recovery in progress") }) {
			v.problem("PostgreSQL started again without crash recovery in its log (%s)", c.cluster.logPath)
		}
	case c.cluster == nil && !pgOut.start.IsZero():
		pgDesc = fmt.Sprintf("%s for %s, simulated on the run's database only (shared cluster; -postgres shared or no initdb): ALLOW_CONNECTIONS false + pg_terminate_backend every 100 ms; %d backends terminated",
			rel(pgOut.start), pgOut.end.Sub(pgOut.start).Round(100*time.Millisecond), pgOut.terminated)
	default:
		v.problem("the PostgreSQL outage did not happen")
	}
	v.add("PostgreSQL outage", pgDesc)

	// HTTP answers: downloads while MinIO was down, answers while
	// PostgreSQL was down, and no 5xx but 503 anywhere.
	outage := map[string]int{}
	pgAnswers := map[string]int{}
	bad5xx, noAnswer := 0, 0
	for _, cl := range calls {
		desc := fmt.Sprintf("%d", cl.status)
		if cl.code != "" {
			desc += " " + cl.code
		}
		if cl.op == "outage_download" {
			ok := cl.status == 503 && cl.jsonError && cl.code == "storage_unavailable" && cl.retryAfter != ""
			if ok {
				outage["503 storage_unavailable (JSON, Retry-After)"]++
			} else {
				outage[desc]++
				v.problem("download while MinIO was down at %s: %s %s %s (want 503 storage_unavailable JSON)", rel(cl.start), desc, cl.err, cl.body)
			}
		}
		if !pgStart.IsZero() && !cl.start.Before(pgStart) && cl.start.Before(pgEnd) {
			pgAnswers[cl.op+" "+desc]++
		}
		switch {
		case cl.status == 0 && cl.err != "":
			noAnswer++
			v.problem("%s at %s got no HTTP answer: %s", cl.op, rel(cl.start), cl.err)
		case cl.status >= 500 && cl.status != 503:
			bad5xx++
			v.problem("%s at %s: %s %s", cl.op, rel(cl.start), desc, cl.body)
		case cl.status == 503 && (!cl.jsonError || cl.retryAfter == ""):
			v.problem("%s at %s: 503 without the JSON error or Retry-After: %s", cl.op, rel(cl.start), cl.body)
		}
	}
	if len(outage) == 0 {
		v.problem("no download was attempted while MinIO was down")
	}
	v.add("downloads through the API while MinIO was down", countsString(outage))
	v.add("API answers to requests sent while PostgreSQL was down", countsString(pgAnswers))
	all := map[string]int{}
	for _, cl := range calls {
		all[fmt.Sprintf("%s %d", cl.op, cl.status)]++
	}
	v.add("all API answers", countsString(all))
	if err := c.verifyImports(ctx, v, pgStart, pgEnd); err != nil {
		return nil, err
	}
	c.verifyZombie(v, zombie)
	v.add("HTTP 5xx other than 503 / requests without an answer", fmt.Sprintf("%d / %d", bad5xx, noAnswer))

	// Objects: each ready report's object equals its row; once the sweep
	// ran, nothing else is stored.
	orphansBefore, err := c.orphanObjects(ctx, readyByKey)
	if err != nil {
		return nil, err
	}
	uploadsBefore, uploadsErr := c.incompleteUploads(ctx)
	sweep, err := c.sweepOnce(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweeping: %w", err)
	}
	keys := map[string]int64{}
	if err := c.store.List(ctx, "", func(key string, size int64) error { keys[key] = size; return nil }); err != nil {
		return nil, fmt.Errorf("listing the bucket: %w", err)
	}
	mismatches, missing := 0, 0
	var bytesChecked int64
	for _, r := range ready {
		if _, ok := keys[*r.ObjectKey]; !ok {
			missing++
			v.problem("report %s is ready but its object %s is missing", r.ID, *r.ObjectKey)
			continue
		}
		body, _, err := c.store.Get(ctx, *r.ObjectKey, 0, -1)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", *r.ObjectKey, err)
		}
		h := sha256.New()
		size, err := io.Copy(h, body)
		body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", *r.ObjectKey, err)
		}
		bytesChecked += size
		if got := hex.EncodeToString(h.Sum(nil)); got != deref(r.SHA256) || r.SizeBytes == nil || size != *r.SizeBytes {
			mismatches++
			v.problem("report %s: object has SHA-256 %s and %d bytes, row says %s and %v", r.ID, got, size, deref(r.SHA256), r.SizeBytes)
		}
	}
	v.add("ready reports' objects (downloaded from MinIO directly and hashed)", fmt.Sprintf("%d objects, %.1f MiB", len(ready)-missing, float64(bytesChecked)/(1<<20)))
	v.add("SHA-256 or size mismatches", fmt.Sprint(mismatches))
	v.add("ready reports without their object", fmt.Sprint(missing))
	if err := c.verifyRebuilds(ctx, v, ready); err != nil {
		return nil, err
	}
	orphans := 0
	for key := range keys {
		if _, ok := readyByKey[key]; !ok {
			orphans++
			v.problem("orphan object %s: no ready report has it", key)
		}
	}
	uploads, err := c.incompleteUploads(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing incomplete uploads: %w", err)
	}
	before := fmt.Sprintf("before it: %d orphan objects, %d incomplete multipart uploads", orphansBefore, uploadsBefore)
	if uploadsErr != nil {
		before = fmt.Sprintf("before it: %d orphan objects, incomplete uploads unknown (%v)", orphansBefore, uploadsErr)
	}
	if sweep.ran {
		v.add("sweep_objects once at the end (its logic, grace 1 ns: every run has ended)",
			fmt.Sprintf("%s; deleted %s; aborted %d uploads", before, countsString(sweep.objects), sweep.uploads))
		v.add("orphan objects after the sweep", fmt.Sprint(orphans))
		v.add("incomplete multipart uploads after the sweep", fmt.Sprint(uploads))
		if uploads > 0 {
			v.problem("%d incomplete multipart uploads after the sweep", uploads)
		}
	} else {
		v.add("sweep_objects", "not run: "+sweep.why)
		v.add("orphan objects (no ready report)", fmt.Sprint(orphans))
		v.add("incomplete multipart uploads left by killed workers (no sweep; MinIO expires them)", fmt.Sprint(uploads))
	}

	// A few downloads through the API now that everything is up.
	sample := slices.Clone(ready)
	c.rngMu.Lock()
	c.rng.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	c.rngMu.Unlock()
	sample = sample[:min(len(sample), 12)]
	okDownloads := 0
	for _, r := range sample {
		cl, sum, size := c.client.download(ctx, "check_download", r.ID)
		if cl.status == 200 && cl.err == "" && sum == deref(r.SHA256) && r.SizeBytes != nil && size == *r.SizeBytes {
			okDownloads++
		} else {
			v.problem("download of %s through the API after the run: %d %s %s, SHA-256 %s", r.ID, cl.status, cl.code, cl.err, sum)
		}
	}
	v.add("downloads through the API after the run (SHA-256 checked)", fmt.Sprintf("%d / %d", okDownloads, len(sample)))

	// What the workers said.
	v.add("worker log lines", c.workerLogSummary())
	return v, nil
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// orphanObjects counts the objects no ready report has.
func (c *chaos) orphanObjects(ctx context.Context, readyByKey map[string]reportRow) (int, error) {
	n := 0
	err := c.store.List(ctx, "", func(key string, _ int64) error {
		if _, ok := readyByKey[key]; !ok {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing the bucket: %w", err)
	}
	return n, nil
}

// incompleteUploads counts multipart uploads started and never completed
// (a worker killed mid-upload leaves one).
func (c *chaos) incompleteUploads(ctx context.Context) (int, error) {
	client, err := minio.New(c.s3.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(c.s3.AccessKeyID, c.s3.SecretAccessKey, ""), Region: c.s3.Region,
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for u := range client.ListIncompleteUploads(ctx, c.s3.Bucket, "", true) {
		if u.Err != nil {
			return n, u.Err
		}
		n++
	}
	return n, nil
}

// workerLogSummary counts the interesting messages of the workers' logs.
func (c *chaos) workerLogSummary() string {
	interesting := map[string]string{
		"report ready": "ready",
		"report generation failed; River will retry":                                  "failed, retried",
		"report generation interrupted; the job will run again":                       "interrupted",
		"job was taken from this run; leaving the report alone":                       "job taken from a run",
		"report already finished; nothing to do":                                      "already finished",
		"report was finished by another run; nothing to do":                           "finished by another run",
		"report generation failed for good":                                           "failed for good",
		"swept object":                                                                "swept object",
		"aborted incomplete upload":                                                   "aborted incomplete upload",
		"deleted the file of a run that did not commit":                               "deleted the file of a run that did not commit",
		"outcome of the finishing transaction unknown; leaving the file to the sweep": "finish outcome unknown, file left to the sweep",
	}
	counts := map[string]int{}
	logs := slices.Clone(c.workers)
	if c.zombie != nil {
		logs = append(logs, c.zombie)
	}
	for _, w := range logs {
		f, err := os.Open(w.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var line struct {
				Msg    string `json:"msg"`
				Code   string `json:"code"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if name, ok := interesting[line.Msg]; ok {
				if line.Code != "" {
					name += " (" + line.Code + ")"
				}
				if line.Reason != "" {
					name += " (" + line.Reason + ")"
				}
				counts[name]++
			}
		}
		f.Close()
	}
	return countsString(counts)
}
