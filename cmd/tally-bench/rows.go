package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
)

// results are every run's numbers; the table shows their medians.
type results struct {
	create   []*createRow
	poll     *pollRow
	pickup   *pickupRow
	ready    []*readyRow
	download *downloadRow
	small    []*smallRow
	chain    *chainRow
	evidence *evidenceRow
	formats  []*formatRow
	pdf      *pdfRow
	gzip     *gzipRow
	wait     []*waitRow
	listAll  *listAllRow
	notes    []string
}

type createRow struct {
	conc                       int
	rate, p50, p95, p99        series
	baseRate, bp50, bp95, bp99 series
	ratio                      series
	errs, baseErrs             int
	firstErr, firstBaseErr     error
}

type pollRow struct {
	conc                      int
	rate, p99, baseRate, bp99 series
	ratio                     series
	errs                      int
	firstErr                  error
}

type pickupRow struct {
	n                 int
	p50, p99, start50 series // ms: job attempted − created; report started − created
	baseP50, baseP99  series // ms: River no-op job attempted − created
}

type readyRow struct {
	size                   int64
	line, copy, sub, group series // seconds
	lineRatio, subRatio    series
	workerHWM, workerRSS   series // bytes, during the line-items report
	workerCPU              series // seconds of worker CPU for the line-items report
	fileBytes, copyBytes   int64
	lastLineReport         string
}

type downloadRow struct {
	size                int64
	bytes               int64
	api, direct, ratio  series // MB/s
	apiHWM, apiSmallHWM series // bytes
	apiIdle             int64
	smallSize           int64
}

type smallRow struct {
	workers             int
	rows                int64 // transactions per report
	rate, noop, ratio   series
	direct, directRatio series // the same work without River and HTTP
}

func (b *bench) measure(ctx context.Context) (*results, error) {
	if err := checkStandardStrings(ctx, b.base); err != nil {
		return nil, err
	}
	r := &results{}
	b.log.printf("starting tally-api")
	if err := b.startAPI(ctx); err != nil {
		return nil, err
	}

	o := b.opts
	if o.wants(1) {
		b.log.printf("row 1, create: no worker runs, so none competes for CPU; the bench runs the chain sequencer")
		if err := b.measureCreate(ctx, r); err != nil {
			return nil, err
		}
	}
	if o.wants(8) {
		b.log.printf("row 8, create with and without the activity chain sequencer")
		if err := b.measureChain(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := b.dropQueuedJobs(ctx); err != nil {
		return nil, err
	}
	if o.wants(6) {
		b.log.printf("row 6, polling")
		if err := b.measurePolling(ctx, r); err != nil {
			return nil, err
		}
	}

	if o.wants(2, 3, 5, 7, 9, 10, 11) {
		b.log.printf("starting one tally-worker")
		if err := b.startWorkers(ctx, 1); err != nil {
			return nil, err
		}
	}
	for _, step := range []struct {
		rows []int
		what string
		fn   func(context.Context, *results) error
	}{
		{[]int{7}, "row 7, pickup latency with an idle fleet", b.measurePickup},
		{[]int{2, 3}, "rows 2 and 3, time to ready and worker memory", b.measureReady},
		{[]int{5}, "row 5, download", b.measureDownload},
		{[]int{9}, "row 9, manifest signing and offline verification", b.measureEvidence},
		{[]int{10}, "row 10, XLSX and PDF", b.measureFormats},
		{[]int{11}, "row 11, gzip download", b.measureGzip},
	} {
		if !o.wants(step.rows...) {
			continue
		}
		b.log.printf("%s", step.what)
		if err := step.fn(ctx, r); err != nil {
			return nil, err
		}
	}
	b.stopWorkers()

	if o.wants(4) {
		b.log.printf("row 4, small reports")
		if err := b.measureSmall(ctx, r); err != nil {
			return nil, err
		}
	}
	// No worker runs for rows 12 and 13: the bench itself commits the
	// status changes, as a worker would.
	if o.wants(12) {
		b.log.printf("row 12, Prefer: wait, commit to answer")
		if err := b.measureWait(ctx, r); err != nil {
			return nil, err
		}
	}
	if o.wants(13) {
		b.log.printf("row 13, unpaged list of %d reports, API memory", listReports)
		if err := b.measureListAll(ctx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// --- row 1 ---------------------------------------------------------------------------------------

func (b *bench) measureCreate(ctx context.Context, r *results) error {
	set := b.fx.create
	apiOp := func(ctx context.Context) error {
		_, err := b.client.create(ctx, set.app.ForeignID, set.lineCase.ID)
		return err
	}
	baseOp := func(ctx context.Context) error {
		_, err := b.insertReport(ctx, set, set.lineCase)
		return err
	}
	// The workers' sequencer chains the events the creates write; none
	// runs here, so the bench runs it, as a worker would.
	stopSeq := b.startSequencer(ctx)
	defer func() {
		if st := stopSeq(); st.err == nil {
			b.log.printf("  sequencer during row 1: %s", st)
		}
	}()
	for _, conc := range []int{1, 16, 64} {
		row := &createRow{conc: conc}
		r.create = append(r.create, row)
		for run := range b.opts.runs {
			var api, base loadResult
			var apiCPU, baseCPU cpuUse
			apiPhase := func() {
				c0 := takeCPUSnapshot()
				api = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, apiOp)
				apiCPU = takeCPUSnapshot().since(c0)
			}
			basePhase := func() {
				c0 := takeCPUSnapshot()
				base = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, baseOp)
				baseCPU = takeCPUSnapshot().since(c0)
			}
			if run%2 == 0 {
				apiPhase()
				basePhase()
			} else {
				basePhase()
				apiPhase()
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if api.ops == 0 || base.ops == 0 {
				return fmt.Errorf("create c=%d: no successful request (API: %v; baseline: %v)", conc, api.firstErr, base.firstErr)
			}
			if conc == 16 && run == b.opts.runs-1 {
				r.notes = append(r.notes,
					fmt.Sprintf("create c=16, last run, through the API: %s", apiCPU.top(5, api.all, "request")),
					fmt.Sprintf("create c=16, last run, baseline: %s", baseCPU.top(5, base.all, "transaction")))
			}
			row.rate.add(api.rate())
			row.p50.add(ms(api.pct(.50)))
			row.p95.add(ms(api.pct(.95)))
			row.p99.add(ms(api.pct(.99)))
			row.baseRate.add(base.rate())
			row.bp50.add(ms(base.pct(.50)))
			row.bp95.add(ms(base.pct(.95)))
			row.bp99.add(ms(base.pct(.99)))
			row.ratio.add(api.rate() / base.rate())
			row.errs += api.errs
			row.baseErrs += base.errs
			if row.firstErr == nil {
				row.firstErr = api.firstErr
			}
			if row.firstBaseErr == nil {
				row.firstBaseErr = base.firstErr
			}
			b.log.printf("  create c=%d run %d/%d: API %.0f req/s p99 %.1f ms (%d errors); baseline %.0f tx/s p99 %.1f ms",
				conc, run+1, b.opts.runs, api.rate(), ms(api.pct(.99)), api.errs, base.rate(), ms(base.pct(.99)))
		}
	}
	return nil
}

// dropQueuedJobs deletes the jobs the create row queued (the river_job
// trigger marks their reports canceled), then vacuums and analyzes the
// tables the row filled, as autovacuum soon would: planned with the
// statistics of the empty tables, the list query would read every report of
// the application on each poll.
func (b *bench) dropQueuedJobs(ctx context.Context) error {
	started := time.Now()
	tag, err := b.ctl.Exec(ctx, `DELETE FROM river_job WHERE kind = 'generate_report' AND state = 'available'`)
	if err != nil {
		return fmt.Errorf("deleting the create row's jobs: %w", err)
	}
	if _, err := b.ctl.Exec(ctx, `VACUUM ANALYZE reports, river_job, activity_events`); err != nil {
		return fmt.Errorf("vacuuming: %w", err)
	}
	b.log.printf("  deleted the %d jobs the create row queued and vacuumed (%s)", tag.RowsAffected(), time.Since(started).Round(time.Millisecond))
	return nil
}

// --- row 6 ---------------------------------------------------------------------------------------

func (b *bench) measurePolling(ctx context.Context, r *results) error {
	set := b.fx.create
	const conc, limit = 64, 50
	etag, err := b.client.etag(ctx, set.app.ForeignID, limit)
	if err != nil {
		return err
	}
	apiOp := func(ctx context.Context) error { return b.client.listNotModified(ctx, set.app.ForeignID, limit, etag) }
	baseOp := func(ctx context.Context) error {
		_, err := db.ListReports(ctx, b.base, db.ListReportsParams{OrgID: b.fx.org.ID, ApplicationID: set.app.ID, Limit: limit + 1})
		return err
	}
	row := &pollRow{conc: conc}
	r.poll = row
	for run := range b.opts.runs {
		var api, base loadResult
		if run%2 == 0 {
			api = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, apiOp)
			base = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, baseOp)
		} else {
			base = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, baseOp)
			api = runLoad(ctx, conc, b.opts.warmup, b.opts.loadFor, apiOp)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if api.ops == 0 || base.ops == 0 {
			return fmt.Errorf("polling: no successful request (API: %v; baseline: %v)", api.firstErr, base.firstErr)
		}
		row.rate.add(api.rate())
		row.p99.add(ms(api.pct(.99)))
		row.baseRate.add(base.rate())
		row.bp99.add(ms(base.pct(.99)))
		row.ratio.add(api.rate() / base.rate())
		row.errs += api.errs
		if row.firstErr == nil {
			row.firstErr = api.firstErr
		}
		b.log.printf("  polling run %d/%d: API %.0f req/s (304) p99 %.1f ms; ListReports %.0f q/s p99 %.1f ms",
			run+1, b.opts.runs, api.rate(), ms(api.pct(.99)), base.rate(), ms(base.pct(.99)))
	}
	return nil
}

// --- row 7 ---------------------------------------------------------------------------------------

// pickupSpacing separates the reports of the pickup row: the fleet is idle
// when each arrives, and the API's River client (whose insert notifications
// are limited to one per queue per 100 ms) notifies for every one.
const pickupSpacing = 150 * time.Millisecond

func (b *bench) measurePickup(ctx context.Context, r *results) error {
	set := b.fx.small
	row := &pickupRow{n: b.opts.pickups}
	r.pickup = row
	for run := range b.opts.runs {
		ids := make([]string, 0, row.n)
		for range row.n {
			time.Sleep(pickupSpacing)
			id, err := b.client.create(ctx, set.app.ForeignID, set.lineCase.ID)
			if err != nil {
				return err
			}
			if err := b.waitStatus(ctx, `SELECT status = 'ready' FROM reports WHERE id = $1`, id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		var jobLat, startLat []time.Duration
		rows, _ := b.ctl.Query(ctx, `
			SELECT extract(epoch FROM j.attempted_at - j.created_at)::float8, extract(epoch FROM r.started_at - r.created_at)::float8
			  FROM reports r JOIN river_job j ON j.id = r.job_id WHERE r.id = ANY($1)`, ids)
		for rows.Next() {
			var a, s float64
			if err := rows.Scan(&a, &s); err != nil {
				return err
			}
			jobLat, startLat = append(jobLat, secs(a)), append(startLat, secs(s))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading pickup latencies: %w", err)
		}

		nc, err := b.startNoopClient(ctx, 0)
		if err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		var jobIDs []int64
		for i := range row.n {
			time.Sleep(pickupSpacing)
			res, err := b.inserter.Insert(ctx, noopArgs{N: i}, nil)
			if err != nil {
				nc.stop()
				return err
			}
			if err := b.waitStatus(ctx, `SELECT state = 'completed' FROM river_job WHERE id = $1`, res.Job.ID); err != nil {
				nc.stop()
				return err
			}
			jobIDs = append(jobIDs, res.Job.ID)
		}
		nc.stop()
		var noopLat []time.Duration
		rows, _ = b.ctl.Query(ctx, `SELECT extract(epoch FROM attempted_at - created_at)::float8 FROM river_job WHERE id = ANY($1)`, jobIDs)
		for rows.Next() {
			var a float64
			if err := rows.Scan(&a); err != nil {
				return err
			}
			noopLat = append(noopLat, secs(a))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading no-op pickup latencies: %w", err)
		}
		sortDurations(jobLat, startLat, noopLat)
		row.p50.add(ms(percentile(jobLat, .5)))
		row.p99.add(ms(percentile(jobLat, .99)))
		row.start50.add(ms(percentile(startLat, .5)))
		row.baseP50.add(ms(percentile(noopLat, .5)))
		row.baseP99.add(ms(percentile(noopLat, .99)))
		b.log.printf("  pickup run %d/%d: report job p50 %.1f ms p99 %.1f ms (report started p50 %.1f ms); River no-op p50 %.1f ms p99 %.1f ms",
			run+1, b.opts.runs, ms(percentile(jobLat, .5)), ms(percentile(jobLat, .99)), ms(percentile(startLat, .5)),
			ms(percentile(noopLat, .5)), ms(percentile(noopLat, .99)))
	}
	return nil
}

// waitStatus polls a one-boolean query every 5 ms until it is true.
func (b *bench) waitStatus(ctx context.Context, sql string, arg any) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var ok bool
		if err := b.ctl.QueryRow(ctx, sql, arg).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v: not done after a minute", arg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- rows 2 and 3 --------------------------------------------------------------------------------

func (b *bench) measureReady(ctx context.Context, r *results) error {
	if len(b.workers) != 1 {
		return errors.New("time to ready needs exactly one worker")
	}
	w := b.workers[0]
	for _, set := range b.fx.sizes {
		row := &readyRow{size: set.rows}
		r.ready = append(r.ready, row)
		for run := range b.opts.runs {
			var (
				line, sub, cp, grp time.Duration
				cpu                time.Duration
				lineCPU, copyCPU   cpuUse
				id                 string
				hwm, rss           int64
			)
			lineReport := func() error {
				cpu0, err := w.cpuTime()
				if err != nil {
					return err
				}
				c0 := takeCPUSnapshot()
				defer func() { lineCPU = takeCPUSnapshot().since(c0) }()
				hwm, rss, err = peakDuring(w, func() error {
					var err error
					line, id, err = b.timeToReady(ctx, set, set.lineCase)
					return err
				})
				if err != nil {
					return err
				}
				cpu1, err := w.cpuTime()
				cpu = cpu1 - cpu0
				return err
			}
			copyBaseline := func() error {
				c0 := takeCPUSnapshot()
				defer func() { copyCPU = takeCPUSnapshot().since(c0) }()
				t := time.Now()
				n, _, err := copyScope(ctx, b.base, set.query)
				cp, row.copyBytes = time.Since(t), n
				return err
			}
			subReport := func() error {
				var err error
				sub, _, err = b.timeToReady(ctx, set, set.subCase)
				return err
			}
			groupBaseline := func() error {
				t := time.Now()
				_, err := groupScope(ctx, b.base, set.query)
				grp = time.Since(t)
				return err
			}
			steps := []func() error{lineReport, copyBaseline, subReport, groupBaseline}
			if run%2 == 1 {
				steps = []func() error{copyBaseline, lineReport, groupBaseline, subReport}
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("time to ready, %s: %w", countName(set.rows), err)
				}
			}
			row.line.add(line.Seconds())
			row.copy.add(cp.Seconds())
			row.sub.add(sub.Seconds())
			row.group.add(grp.Seconds())
			row.lineRatio.add(line.Seconds() / cp.Seconds())
			row.subRatio.add(sub.Seconds() / grp.Seconds())
			row.workerHWM.add(float64(hwm))
			row.workerRSS.add(float64(rss))
			row.workerCPU.add(cpu.Seconds())
			row.lastLineReport = id
			if set == b.fx.sizes[len(b.fx.sizes)-1] && run == b.opts.runs-1 {
				r.notes = append(r.notes,
					fmt.Sprintf("%s line items, last run, POST to ready: %s", countName(set.rows), lineCPU.top(5, 0, "")),
					fmt.Sprintf("%s line items, last run, COPY baseline: %s", countName(set.rows), copyCPU.top(5, 0, "")))
			}
			b.log.printf("  %s run %d/%d: line items %s (COPY %s; worker CPU %s), subtotals %s (GROUP BY %s); worker peak RSS %.1f MiB",
				countName(set.rows), run+1, b.opts.runs, line.Round(time.Millisecond), cp.Round(time.Millisecond), cpu,
				sub.Round(time.Millisecond), grp.Round(time.Millisecond), mib(hwm))
			b.log.printf("    CPU, POST to ready: %s; COPY: %s", lineCPU.top(5, 0, ""), copyCPU.top(5, 0, ""))
		}
		if err := b.ctl.QueryRow(ctx, `SELECT size_bytes FROM reports WHERE id = $1`, row.lastLineReport).Scan(&row.fileBytes); err != nil {
			return err
		}
	}
	return nil
}

// timeToReady POSTs a report and polls the list every 10 ms until it is
// ready: the wall time the portal sees.
func (b *bench) timeToReady(ctx context.Context, set *scopeSet, c *db.Case) (time.Duration, string, error) {
	return b.timeToReadyType(ctx, set, c, "transaction_summary")
}

// timeToReadyType is timeToReady for a report of the given type.
func (b *bench) timeToReadyType(ctx context.Context, set *scopeSet, c *db.Case, typ string) (time.Duration, string, error) {
	// Each report arrives at an idle fleet, like the pickup row's: the
	// API's River client notifies the workers of at most one insert per
	// queue per 100 ms, and a report created sooner after another may
	// wait for the workers' next poll (up to TALLY_FETCH_POLL_INTERVAL).
	time.Sleep(pickupSpacing)
	t := time.Now()
	id, err := b.client.createType(ctx, set.app.ForeignID, c.ID, typ)
	if err != nil {
		return 0, "", err
	}
	if err := b.client.waitReady(ctx, set.app.ForeignID, id, 10*time.Millisecond, 10*time.Minute); err != nil {
		return 0, "", err
	}
	return time.Since(t), id, nil
}

// largest is the largest report of rows 2 and 3 that rows 5 and 9-11 use:
// the 1M one when -large adds the 10M one (downloading and rebuilding 1.5 GB
// several times would take the bench's time for no new figure).
func (b *bench) largest(r *results) (*readyRow, *scopeSet) {
	i := len(r.ready) - 1
	if b.opts.large && i > 0 {
		i--
	}
	return r.ready[i], b.fx.sizes[i]
}

// --- row 5 ---------------------------------------------------------------------------------------

// downloadPairs is how many downloads through the API, and as many direct
// ones, each download run times.
const downloadPairs = 3

func (b *bench) measureDownload(ctx context.Context, r *results) error {
	big, bigSet := b.largest(r)
	small, smallSet := r.ready[0], b.fx.sizes[0]
	var key string
	if err := b.ctl.QueryRow(ctx, `SELECT object_key FROM reports WHERE id = $1`, big.lastLineReport).Scan(&key); err != nil {
		return err
	}
	row := &downloadRow{size: big.size, bytes: big.fileBytes, smallSize: small.size}
	r.download = row
	idle, _, err := b.api.memory()
	if err != nil {
		return err
	}
	row.apiIdle = idle
	buf := make([]byte, 256<<10)
	for run := range b.opts.runs {
		// A download takes a fraction of a second, so each run times
		// downloadPairs of each, interleaved, and keeps the medians.
		var apiRates, directRates series
		var apiHWM int64
		var apiCPU, directCPU cpuSum
		viaAPI := func() error {
			c0 := takeCPUSnapshot()
			defer func() { apiCPU.add(takeCPUSnapshot().since(c0)) }()
			hwm, _, err := peakDuring(b.api, func() error {
				t := time.Now()
				n, err := b.client.download(ctx, bigSet.app.ForeignID, big.lastLineReport, buf)
				apiRates.add(float64(n) / 1e6 / time.Since(t).Seconds())
				return err
			})
			apiHWM = max(apiHWM, hwm)
			return err
		}
		direct := func() error {
			// The response body itself, not a minio.Object, whose
			// goroutine hand-offs would slow the baseline down.
			c0 := takeCPUSnapshot()
			defer func() { directCPU.add(takeCPUSnapshot().since(c0)) }()
			t := time.Now()
			obj, _, _, err := minio.Core{Client: b.minio}.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			defer obj.Close()
			n, err := io.CopyBuffer(discard{}, obj, buf)
			directRates.add(float64(n) / 1e6 / time.Since(t).Seconds())
			if err == nil && n != big.fileBytes {
				err = fmt.Errorf("direct GET: %d bytes, want %d", n, big.fileBytes)
			}
			return err
		}
		for i := range downloadPairs {
			steps := []func() error{viaAPI, direct}
			if (run+i)%2 == 1 {
				steps = []func() error{direct, viaAPI}
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("download: %w", err)
				}
			}
		}
		apiRate, directRate := apiRates.med(), directRates.med()
		smallHWM, _, err := peakDuring(b.api, func() error {
			_, err := b.client.download(ctx, smallSet.app.ForeignID, small.lastLineReport, buf)
			return err
		})
		if err != nil {
			return fmt.Errorf("download of the %s report: %w", countName(small.size), err)
		}
		row.api.add(apiRate)
		row.direct.add(directRate)
		row.ratio.add(apiRate / directRate)
		row.apiHWM.add(float64(apiHWM))
		row.apiSmallHWM.add(float64(smallHWM))
		b.log.printf("  download run %d/%d: API %.0f MB/s, MinIO %.0f MB/s; API peak RSS %.1f MiB (%.1f MiB for the %s file)",
			run+1, b.opts.runs, apiRate, directRate, mib(apiHWM), mib(smallHWM), countName(small.size))
		// Where a download's CPU goes, per MB, so that the cost of the API's
		// hop shows beside the direct GET's.
		mb := int(downloadPairs * big.fileBytes / 1e6)
		b.log.printf("    through the API: %s", apiCPU.use.top(4, mb, "MB"))
		b.log.printf("    direct GET:      %s", directCPU.use.top(4, mb, "MB"))
	}
	return nil
}

// cpuSum adds up the CPU use of several timed steps (busy: their mean).
type cpuSum struct {
	use   cpuUse
	steps int
}

func (s *cpuSum) add(u cpuUse) {
	if s.use.byName == nil {
		s.use.byName = map[string]time.Duration{}
	}
	for name, d := range u.byName {
		s.use.byName[name] += d
	}
	s.use.busy = (s.use.busy*float64(s.steps) + u.busy) / float64(s.steps+1)
	s.steps++
}

// --- row 4 ---------------------------------------------------------------------------------------

func (b *bench) measureSmall(ctx context.Context, r *results) error {
	b.log.printf("  queueing the direct baseline's %d reports", b.opts.smallReports)
	direct, err := b.directReports(ctx, b.opts.smallReports)
	if err != nil {
		return fmt.Errorf("small reports, direct baseline: %w", err)
	}
	for _, workers := range b.opts.smallWorkers {
		row := &smallRow{workers: workers, rows: b.opts.smallRows}
		r.small = append(r.small, row)
		for run := range b.opts.runs {
			var rate, noop, dir float64
			reports := func() error {
				var err error
				rate, err = b.smallBatch(ctx, workers)
				return err
			}
			noops := func() error {
				var err error
				noop, err = b.noopBatch(ctx, workers)
				return err
			}
			directs := func() error {
				var err error
				dir, err = b.directBatch(ctx, workers*config.DefaultSmallConcurrency, direct)
				return err
			}
			steps := []func() error{reports, directs, noops}
			if run%2 == 1 {
				steps = []func() error{noops, directs, reports}
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("small reports, %d workers: %w", workers, err)
				}
			}
			row.rate.add(rate)
			row.noop.add(noop)
			row.ratio.add(rate / noop)
			row.direct.add(dir)
			row.directRatio.add(rate / dir)
			if run == b.opts.runs-1 {
				r.notes = append(r.notes, fmt.Sprintf("small reports, %d worker(s), last run (worker start to last report ready): %s",
					workers, b.lastSmallCPU.top(5, b.opts.smallReports, "report")))
			}
			b.log.printf("  small reports, %d worker(s), run %d/%d: %.1f reports/s; direct (no River, no HTTP) %.1f reports/s; River no-op %.1f jobs/s",
				workers, run+1, b.opts.runs, rate, dir, noop)
		}
	}
	return nil
}

// batchPoll is how often the small-report and no-op batches check whether
// they are done. Their rates come from the rows' timestamps, not from when
// the poll sees the end; each poll reads every row of the batch (some 0.2 ms
// of PostgreSQL time per report at 50 ms), work the direct baseline does not
// compete with.
const batchPoll = 250 * time.Millisecond

// smallBatch queues the batch of small reports with no worker running, then
// starts the workers and waits until every report is ready. The rate is
// counted from the first report's start to the last one's completion.
func (b *bench) smallBatch(ctx context.Context, workers int) (float64, error) {
	set := b.fx.small
	n := b.opts.smallReports
	ids := make([]string, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				id, err := b.insertReport(ctx, set, set.lineCase)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					continue
				}
				ids[i] = id
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	// The batch's report.created events (and the direct baseline's) are
	// chained now, as a running fleet's sequencer chains them within a
	// second of their creation: that is the create's work, not the batch's.
	if _, err := db.ChainPending(ctx, b.ctl, db.DefaultChainBatch); err != nil {
		return 0, err
	}
	if b.opts.pgss {
		if err := b.pgssReset(ctx); err != nil {
			return 0, err
		}
	}
	c0 := takeCPUSnapshot()
	if err := b.startWorkers(ctx, workers); err != nil {
		return 0, err
	}
	defer b.stopWorkers()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var ready, bad int
		if err := b.ctl.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status IN ('failed', 'canceled'))
			  FROM reports WHERE id = ANY($1)`, ids).Scan(&ready, &bad); err != nil {
			return 0, err
		}
		if bad > 0 {
			return 0, fmt.Errorf("%d small reports failed", bad)
		}
		if ready == n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d small reports ready after 10 minutes", ready, n)
		}
		time.Sleep(batchPoll)
	}
	b.lastSmallCPU = takeCPUSnapshot().since(c0)
	b.log.printf("  small reports, %d worker(s): %s", workers, b.lastSmallCPU.top(6, n, "report"))
	if b.opts.pgss {
		if err := (pgss{b}).print(ctx, 25, n, "report"); err != nil {
			return 0, err
		}
	}
	var span float64
	if err := b.ctl.QueryRow(ctx, `SELECT extract(epoch FROM max(completed_at) - min(started_at))::float8 FROM reports WHERE id = ANY($1)`, ids).Scan(&span); err != nil {
		return 0, err
	}
	return float64(n) / span, nil
}

// noopBatch is smallBatch's baseline: as many no-op jobs, worked by as many
// River clients with a worker's fetch settings; counted from the first
// job's attempt to the last one's completion.
func (b *bench) noopBatch(ctx context.Context, clients int) (float64, error) {
	n := b.opts.smallReports
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noopArgs{N: i}}
	}
	res, err := b.inserter.InsertMany(ctx, params)
	if err != nil {
		return 0, err
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	if b.opts.pgss {
		if err := b.pgssReset(ctx); err != nil {
			return 0, err
		}
	}
	var ncs []*noopClient
	defer func() {
		for _, c := range ncs {
			c.stop()
		}
	}()
	for i := range clients {
		c, err := b.startNoopClient(ctx, i)
		if err != nil {
			return 0, err
		}
		ncs = append(ncs, c)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var done int
		if err := b.ctl.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE id = ANY($1) AND state = 'completed'`, ids).Scan(&done); err != nil {
			return 0, err
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d no-op jobs done after 10 minutes", done, n)
		}
		time.Sleep(batchPoll)
	}
	var span float64
	if err := b.ctl.QueryRow(ctx, `SELECT extract(epoch FROM max(finalized_at) - min(attempted_at))::float8 FROM river_job WHERE id = ANY($1)`, ids).Scan(&span); err != nil {
		return 0, err
	}
	if b.opts.pgss {
		if err := (pgss{b}).print(ctx, 12, n, "no-op job"); err != nil {
			return 0, err
		}
	}
	return float64(n) / span, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sortDurations(ds ...[]time.Duration) {
	for _, d := range ds {
		slices.Sort(d)
	}
}
