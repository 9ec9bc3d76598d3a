package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// --- row 12 --------------------------------------------------------------------------------------

// waitClients is how many requests wait at once in row 12.
const waitClients = 500

// waitSpacing separates the one-by-one commits of row 12.
const waitSpacing = 2 * time.Millisecond

type waitRow struct {
	mode                     string // "one by one" or "burst"
	p50, p95, p99, max       series // ms: answer received − commit returned
	notifyP50, notifyP99     series // ms: the bench's own LISTEN, notification − commit returned
	ratio                    series
	errs                     int
	firstErr                 error
	answeredWithoutAnyChange int
}

// measureWait: waitClients reports, each with a GET Prefer: wait=30 held by
// the API, then each report marked ready in a transaction of its own (one
// by one, waitSpacing apart) or all in one transaction (burst). Latency is
// from the moment Commit returned in the bench to the moment the waiting
// client has the whole answer. Baseline: the same commits seen by a LISTEN
// on a connection of the bench: what PostgreSQL's NOTIFY alone costs.
func (b *bench) measureWait(ctx context.Context, r *results) error {
	set := b.fx.small
	one, burst := &waitRow{mode: "one by one"}, &waitRow{mode: "burst"}
	r.wait = []*waitRow{one, burst}
	for run := range b.opts.runs {
		for _, row := range []*waitRow{one, burst} {
			lat, notify, err := b.waitPhase(ctx, set, row)
			if err != nil {
				return err
			}
			sortDurations(lat, notify)
			row.p50.add(ms(percentile(lat, .5)))
			row.p95.add(ms(percentile(lat, .95)))
			row.p99.add(ms(percentile(lat, .99)))
			row.max.add(ms(percentile(lat, 1)))
			row.notifyP50.add(ms(percentile(notify, .5)))
			row.notifyP99.add(ms(percentile(notify, .99)))
			row.ratio.add(ms(percentile(lat, .5)) / max(ms(percentile(notify, .5)), 0.001))
			b.log.printf("  wait run %d/%d, %s: answer − commit p50 %.1f / p95 %.1f / p99 %.1f / max %.1f ms; NOTIFY alone p50 %.1f / p99 %.1f ms",
				run+1, b.opts.runs, row.mode, ms(percentile(lat, .5)), ms(percentile(lat, .95)), ms(percentile(lat, .99)),
				ms(percentile(lat, 1)), ms(percentile(notify, .5)), ms(percentile(notify, .99)))
		}
	}
	return nil
}

// waitPhase runs one phase of row 12 and returns the latencies of the
// answers and of the bench's own notifications.
func (b *bench) waitPhase(ctx context.Context, set *scopeSet, row *waitRow) (lat, notify []time.Duration, err error) {
	ids := make([]string, waitClients)
	for i := range ids {
		rep, err := db.CreateReport(ctx, b.ctl, db.CreateReportParams{OrgID: b.fx.org.ID, ApplicationID: set.app.ID, CaseID: set.lineCase.ID,
			Type: "transaction_summary", Metadata: map[string]any{"case_id": set.lineCase.ID}, CreatedBy: b.fx.auditor.ID})
		if err != nil {
			return nil, nil, err
		}
		ids[i] = rep.ID
	}
	if _, err := b.ctl.Exec(ctx, `UPDATE reports SET status = 'running', started_at = now(), updated_at = now() WHERE id = ANY($1)`, ids); err != nil {
		return nil, nil, err
	}

	// The baseline listener.
	lconn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return nil, nil, err
	}
	defer lconn.Close(context.WithoutCancel(ctx))
	if _, err := lconn.Exec(ctx, "LISTEN "+db.ReportStatusChannel); err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	notified := map[string]time.Time{}
	answered := map[string]time.Time{}
	lctx, stopListen := context.WithCancel(ctx)
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		for {
			n, err := lconn.WaitForNotification(lctx)
			if err != nil {
				return
			}
			at := time.Now()
			mu.Lock()
			if _, ok := notified[n.Payload]; !ok {
				notified[n.Payload] = at
			}
			mu.Unlock()
		}
	}()

	// The waiting clients, started in batches so that admission (64 slots,
	// 1 s wait) admits each.
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := b.client.waitReport(ctx, set.app.ForeignID, id, 30)
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				row.errs++
				if row.firstErr == nil {
					row.firstErr = err
				}
			case status != "ready":
				row.answeredWithoutAnyChange++
			default:
				answered[id] = at
			}
		}()
		if (i+1)%50 == 0 {
			if err := b.waitGauge(ctx, i+1); err != nil {
				stopListen()
				return nil, nil, err
			}
		}
	}

	// The worker's commits.
	commits := map[string]time.Time{}
	ready := func(tx pgx.Tx, id string) error {
		ok, err := db.MarkReportReady(ctx, tx, db.MarkReportReadyParams{ID: id, Metadata: db.ReadyMetadata{Format: "csv", RowCount: 1},
			SizeBytes: 1, SHA256: strings.Repeat("0", 64), ContentType: "text/csv; charset=utf-8", ObjectKey: "bench/" + id,
			ExpiresAt: time.Now().Add(24 * time.Hour)})
		if err == nil && !ok {
			err = fmt.Errorf("report %s was not running", id)
		}
		return err
	}
	if row.mode == "burst" {
		err := db.WithTx(ctx, b.base, func(tx pgx.Tx) error {
			for _, id := range ids {
				if err := ready(tx, id); err != nil {
					return err
				}
			}
			return nil
		})
		at := time.Now()
		if err != nil {
			stopListen()
			return nil, nil, err
		}
		for _, id := range ids {
			commits[id] = at
		}
	} else {
		for _, id := range ids {
			if err := db.WithTx(ctx, b.base, func(tx pgx.Tx) error { return ready(tx, id) }); err != nil {
				stopListen()
				return nil, nil, err
			}
			commits[id] = time.Now()
			time.Sleep(waitSpacing)
		}
	}
	wg.Wait()
	// Every notification was sent before the last answer could be read.
	time.Sleep(100 * time.Millisecond)
	stopListen()
	<-listenDone

	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if at, ok := answered[id]; ok {
			lat = append(lat, at.Sub(commits[id]))
		}
		if at, ok := notified[id]; ok {
			notify = append(notify, at.Sub(commits[id]))
		}
	}
	if len(lat) == 0 {
		return nil, nil, fmt.Errorf("no waiting client was answered with a ready report (errors: %d, first: %v; unchanged: %d)",
			row.errs, row.firstErr, row.answeredWithoutAnyChange)
	}
	return lat, notify, nil
}

// waitGauge polls the API's metrics until n requests are waiting.
func (b *bench) waitGauge(ctx context.Context, n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := b.client.gauge(ctx, "tally_report_waits_in_progress")
		if err != nil {
			return err
		}
		if int(got) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %.0f requests waiting after a minute, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReport GETs one report with Prefer: wait and returns its status.
func (c *apiClient) waitReport(ctx context.Context, foreignID, reportID string, wait int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.base+"/api/applications/"+url.PathEscape(foreignID)+"/reports/"+url.PathEscape(reportID), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Prefer", "wait="+strconv.Itoa(wait))
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", statusError(resp, http.StatusOK)
	}
	var rep listedReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return "", err
	}
	return rep.Status, nil
}

// gauge reads one unlabelled gauge from the API's /metrics.
func (c *apiClient) gauge(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// --- row 13 --------------------------------------------------------------------------------------

// listReports is how many reports the unpaged list of row 13 holds.
const listReports = 100_000

type listAllRow struct {
	n                   int
	bodyBytes           int64
	hwm, pagedHWM, idle series // bytes
	secs, pagedSecs     series
	notModified         series // ms: 304 of the unpaged list
}

// measureListAll seeds listReports ready reports with one INSERT, then per
// run lists them once unpaged (VmHWM of the API reset before, read after)
// and once by pages of 200 following Link (the old way, same reset), order
// alternating, and times a 304 of the unpaged list.
func (b *bench) measureListAll(ctx context.Context, r *results) error {
	set := b.fx.list
	row := &listAllRow{n: listReports}
	r.listAll = row
	started := time.Now()
	_, err := b.ctl.Exec(ctx, `
		INSERT INTO reports (id, org_id, application_id, case_id, type, status, metadata, created_by, created_at, updated_at,
		                     started_at, completed_at, expires_at, size_bytes, sha256, content_type, object_key, creation_snapshot)
		SELECT 'rpt_' || lpad(to_hex(i), 26, '0'), $1, $2, $3, 'transaction_summary', 'ready',
		       jsonb_build_object('case_id', $3::text, 'period_start', '2025-01-01T00:00:00Z', 'period_end', '2026-01-01T00:00:00Z',
		                          'disclosure_flags', jsonb_build_array('line_items'), 'contract_filters', '[]'::jsonb,
		                          'data_as_of', now(), 'format', 'csv', 'row_count', i, 'totals', '{}'::jsonb),
		       $4, now() - i * interval '1 second', now(), now(), now(), now() + interval '30 days',
		       1000 + i, encode(sha256(i::text::bytea), 'hex'), 'text/csv; charset=utf-8', 'bench/list/' || i, pg_current_snapshot()
		  FROM generate_series(1, $5::int) i`,
		b.fx.org.ID, set.app.ID, set.lineCase.ID, b.fx.auditor.ID, listReports)
	if err != nil {
		return fmt.Errorf("seeding the list's reports: %w", err)
	}
	if _, err := b.ctl.Exec(ctx, `VACUUM ANALYZE reports`); err != nil {
		return err
	}
	b.log.printf("  seeded %d reports in %s", listReports, time.Since(started).Round(time.Millisecond))

	for run := range b.opts.runs {
		if idle, _, err := b.api.memory(); err == nil {
			row.idle.add(float64(idle))
		}
		unpaged := func() error {
			t0 := time.Now()
			var n int
			hwm, _, err := peakDuring(b.api, func() error {
				var err error
				n, row.bodyBytes, err = b.client.listAll(ctx, set.app.ForeignID)
				return err
			})
			if err != nil {
				return err
			}
			if n != listReports {
				return fmt.Errorf("unpaged list: %d reports, want %d", n, listReports)
			}
			row.hwm.add(float64(hwm))
			row.secs.add(time.Since(t0).Seconds())
			return nil
		}
		paged := func() error {
			t0 := time.Now()
			var n int
			hwm, _, err := peakDuring(b.api, func() error {
				var err error
				n, err = b.client.listPaged(ctx, set.app.ForeignID, 200)
				return err
			})
			if err != nil {
				return err
			}
			if n != listReports {
				return fmt.Errorf("paged list: %d reports, want %d", n, listReports)
			}
			row.pagedHWM.add(float64(hwm))
			row.pagedSecs.add(time.Since(t0).Seconds())
			return nil
		}
		first, second := unpaged, paged
		if run%2 == 1 {
			first, second = paged, unpaged
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		d, err := b.client.listAllNotModified(ctx, set.app.ForeignID)
		if err != nil {
			return err
		}
		row.notModified.add(ms(d))
		b.log.printf("  list run %d/%d: unpaged %.1f MB in %.2f s, API VmHWM %.1f MiB; pages of 200: %.2f s, VmHWM %.1f MiB; 304 in %.1f ms",
			run+1, b.opts.runs, float64(row.bodyBytes)/1e6, row.secs[len(row.secs)-1], row.hwm[len(row.hwm)-1]/(1<<20),
			row.pagedSecs[len(row.pagedSecs)-1], row.pagedHWM[len(row.pagedHWM)-1]/(1<<20), ms(d))
	}
	return nil
}

// listAll GETs the unpaged list and counts its reports as they arrive.
func (c *apiClient) listAll(ctx context.Context, foreignID string) (n int, size int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/applications/"+url.PathEscape(foreignID)+"/reports", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, statusError(resp, http.StatusOK)
	}
	cr := &countingBody{r: resp.Body}
	dec := json.NewDecoder(bufio.NewReaderSize(cr, 256<<10))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return 0, 0, fmt.Errorf("unpaged list: not an array (%v, %v)", t, err)
	}
	for dec.More() {
		var rep listedReport
		if err := dec.Decode(&rep); err != nil {
			return n, cr.n, fmt.Errorf("unpaged list, report %d: %w", n, err)
		}
		n++
	}
	if t, err := dec.Token(); err != nil || t != json.Delim(']') {
		return n, cr.n, fmt.Errorf("unpaged list: no closing bracket (%v, %v)", t, err)
	}
	return n, cr.n, nil
}

// listAllNotModified GETs the unpaged list twice, the second time with
// the first's ETag, and returns how long the 304 took.
func (c *apiClient) listAllNotModified(ctx context.Context, foreignID string) (time.Duration, error) {
	u := c.base + "/api/applications/" + url.PathEscape(foreignID) + "/reports"
	get := func(etag string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		return c.do(req)
	}
	resp, err := get("")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	t0 := time.Now()
	resp, err = get(etag)
	if err != nil {
		return 0, err
	}
	d := time.Since(t0)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		return 0, statusError(resp, http.StatusNotModified)
	}
	return d, nil
}

// listPaged follows the list's Link headers from the first page of limit.
func (c *apiClient) listPaged(ctx context.Context, foreignID string, limit int) (int, error) {
	next := c.listURL(foreignID, limit)
	n := 0
	for next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return n, err
		}
		resp, err := c.do(req)
		if err != nil {
			return n, err
		}
		if resp.StatusCode != http.StatusOK {
			err := statusError(resp, http.StatusOK)
			resp.Body.Close()
			return n, err
		}
		var page []listedReport
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return n, err
		}
		n += len(page)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			start, end := strings.IndexByte(l, '<'), strings.IndexByte(l, '>')
			if start < 0 || end < start {
				return n, errors.New("malformed Link header")
			}
			next = c.base + l[start+1:end]
		}
	}
	return n, nil
}

type countingBody struct {
	r io.Reader
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
