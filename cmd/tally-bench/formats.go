package main

import (
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
)

// Rows 8 to 11: the costs of issue 12 (the chained activity event, manifest
// signing, offline verification) and issue 13 (XLSX, PDF, gzip downloads).

type chainRow struct {
	conc                      int
	chained, unchained, ratio series // tx/s
	cp99, up99                series // ms
	errs                      int
	firstErr                  error
	lastSeq                   sequencerStats // the last chained phase's sequencer
}

type evidenceRow struct {
	size           int64
	fileBytes      int64
	manifestBytes  int
	sign, rawSign  series // µs per signature
	verify, digest series // seconds
}

type formatRow struct {
	size             int64
	xlsx, csv, ratio series // seconds
	xlsxHWM, csvHWM  series // bytes
	xlsxBytes        int64
}

type pdfRow struct {
	size       int64
	pdf, group series // seconds
	pdfBytes   int64
}

type gzipRow struct {
	size                 int64
	fileBytes, wireBytes int64
	gz, plain, ratio     series // MB/s of the uncompressed file delivered
}

// --- row 8: the chained activity event --------------------------------------------------------

// measureChain runs jobs.CreateReport at concurrency 16 with the activity
// chain sequencer running (as every worker runs it, every
// config.DefaultChainInterval), then with it stopped, alternating the order
// per run. Before each phase the sequencer drains what the previous phase
// left unchained (untimed), so each chained phase chains its own events.
func (b *bench) measureChain(ctx context.Context, r *results) error {
	set := b.fx.create
	op := func(ctx context.Context) error {
		_, err := b.insertReport(ctx, set, set.lineCase)
		return err
	}
	row := &chainRow{conc: 16}
	r.chain = row
	for run := range b.opts.runs {
		var chained, unchained loadResult
		phases := []bool{true, false}
		if run%2 == 1 {
			phases = []bool{false, true}
		}
		for _, on := range phases {
			if _, err := db.ChainPending(ctx, b.ctl, db.DefaultChainBatch); err != nil {
				return fmt.Errorf("draining the chain: %w", err)
			}
			var stop func() sequencerStats
			if on {
				stop = b.startSequencer(ctx)
			}
			res := runLoad(ctx, row.conc, b.opts.warmup, b.opts.loadFor, op)
			if on {
				chained = res
				row.lastSeq = stop()
				if row.lastSeq.err != nil {
					return fmt.Errorf("sequencer: %w", row.lastSeq.err)
				}
			} else {
				unchained = res
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if chained.ops == 0 || unchained.ops == 0 {
			return fmt.Errorf("chain c=%d: no successful transaction (chained: %v; unchained: %v)", row.conc, chained.firstErr, unchained.firstErr)
		}
		row.chained.add(chained.rate())
		row.unchained.add(unchained.rate())
		row.cp99.add(ms(chained.pct(.99)))
		row.up99.add(ms(unchained.pct(.99)))
		row.ratio.add(chained.rate() / unchained.rate())
		row.errs += chained.errs + unchained.errs
		if row.firstErr == nil {
			row.firstErr = cmpErr(chained.firstErr, unchained.firstErr)
		}
		b.log.printf("  chain c=%d run %d/%d: chained %.0f tx/s p99 %.1f ms; unchained %.0f tx/s p99 %.1f ms; sequencer: %s",
			row.conc, run+1, b.opts.runs, chained.rate(), ms(chained.pct(.99)), unchained.rate(), ms(unchained.pct(.99)), row.lastSeq)
	}
	_, err := db.ChainPending(ctx, b.ctl, db.DefaultChainBatch)
	return err
}

// sequencerStats describe a sequencer's run: passes, events chained, its
// longest pass and the largest chain lag it saw after a pass.
type sequencerStats struct {
	passes, events int
	longest        time.Duration
	maxLag         time.Duration
	cpu            time.Duration // of the sequencer's PostgreSQL backend; 0 if unknown
	err            error
}

func (s sequencerStats) String() string {
	out := fmt.Sprintf("%d events in %d passes, longest pass %s, largest lag after a pass %s",
		s.events, s.passes, s.longest.Round(time.Millisecond), s.maxLag.Round(time.Millisecond))
	if s.cpu > 0 && s.events > 0 {
		out += fmt.Sprintf(", its PostgreSQL backend used %s of CPU (%.0f µs per event)",
			s.cpu.Round(10*time.Millisecond), float64(s.cpu.Microseconds())/float64(s.events))
	}
	return out
}

// startSequencer runs the activity chain sequencer in the bench, as a worker
// does (db.ChainPending every config.DefaultChainInterval, then db.ChainLag),
// on a connection of its own, until the returned function is called.
func (b *bench) startSequencer(ctx context.Context) (stop func() sequencerStats) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan sequencerStats, 1)
	// The pool has one connection: its backend is the sequencer's.
	var pid int
	_ = b.seq.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
	cpu0, cpuErr := pidCPUTime(pid)
	go func() {
		var st sequencerStats
		defer func() {
			if cpu1, err := pidCPUTime(pid); err == nil && cpuErr == nil {
				st.cpu = cpu1 - cpu0
			}
			done <- st
		}()
		t := time.NewTicker(config.DefaultChainInterval)
		defer t.Stop()
		for {
			start := time.Now()
			n, err := db.ChainPending(ctx, b.seq, db.DefaultChainBatch)
			var lag time.Duration
			if err == nil {
				lag, err = db.ChainLag(ctx, b.seq)
			}
			if err != nil {
				if ctx.Err() == nil {
					st.err = err
				}
				return
			}
			st.passes++
			st.events += n
			st.longest = max(st.longest, time.Since(start))
			st.maxLag = max(st.maxLag, lag)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() sequencerStats {
		cancel()
		return <-done
	}
}

// --- row 9: manifest signing and offline verification -----------------------------------------

// signLoops is how many signatures each signing measurement times.
const signLoops = 2000

func (b *bench) measureEvidence(ctx context.Context, r *results) error {
	big, set := b.largest(r)
	doc, err := b.client.get(ctx, "/api/applications/"+url.PathEscape(set.app.ForeignID)+"/reports/"+url.PathEscape(big.lastLineReport)+"/manifest")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	jwks, err := b.client.get(ctx, "/.well-known/tally-signing-keys")
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	keys, err := evidence.ParseJWKSet(jwks)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	path := filepath.Join(b.tmp, big.lastLineReport+".csv")
	if err := b.client.downloadTo(ctx, set.app.ForeignID, big.lastLineReport, path); err != nil {
		return err
	}
	defer os.Remove(path)
	var s evidence.Signed
	if err := json.Unmarshal(doc, &s); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	var m evidence.Manifest
	if err := json.Unmarshal(s.Manifest, &m); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	key, err := evidence.GenerateKey()
	if err != nil {
		return err
	}
	row := &evidenceRow{size: big.size, fileBytes: big.fileBytes, manifestBytes: len(s.Manifest)}
	r.evidence = row
	for run := range b.opts.runs {
		t := time.Now()
		var canonical []byte
		for range signLoops {
			mm := m
			if canonical, _, err = evidence.SignManifest(key, &mm); err != nil {
				return err
			}
		}
		sign := time.Since(t) / signLoops
		t = time.Now()
		for range signLoops {
			_ = ed25519.Sign(key.Private, canonical)
		}
		raw := time.Since(t) / signLoops

		verify := func() (time.Duration, error) {
			t := time.Now()
			vm, err := evidence.VerifySigned(doc, keys)
			if err != nil {
				return 0, err
			}
			f, err := os.Open(path)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			if err := evidence.VerifyFile(vm, f); err != nil {
				return 0, err
			}
			return time.Since(t), nil
		}
		digest := func() (time.Duration, error) {
			t := time.Now()
			f, err := os.Open(path)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return 0, err
			}
			return time.Since(t), nil
		}
		var v, d time.Duration
		if run%2 == 0 {
			if v, err = verify(); err == nil {
				d, err = digest()
			}
		} else {
			if d, err = digest(); err == nil {
				v, err = verify()
			}
		}
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		row.sign.add(float64(sign) / float64(time.Microsecond))
		row.rawSign.add(float64(raw) / float64(time.Microsecond))
		row.verify.add(v.Seconds())
		row.digest.add(d.Seconds())
		b.log.printf("  evidence run %d/%d: sign %s (ed25519.Sign %s); verify %s (sha256 alone %s)",
			run+1, b.opts.runs, sign, raw, v.Round(time.Millisecond), d.Round(time.Millisecond))
	}
	return nil
}

// --- row 10: XLSX and PDF ---------------------------------------------------------------------

// measureFormats times the XLSX workbook of every case of 100k transactions
// or more with the worker's peak RSS, beside the CSV of the same case timed
// right before it, and the PDF attestation of the largest case beside the
// GROUP BY it needs.
func (b *bench) measureFormats(ctx context.Context, r *results) error {
	w := b.workers[0]
	for _, set := range b.fx.sizes {
		if set.rows < 100_000 || set.rows > 1_000_000 {
			continue // the 10M scope of -large is rows 2 and 3 only
		}
		row := &formatRow{size: set.rows}
		r.formats = append(r.formats, row)
		for run := range b.opts.runs {
			var xt, ct time.Duration
			var xh, ch int64
			var xid string
			xlsx := func() (err error) {
				xh, _, err = peakDuring(w, func() error {
					var err error
					xt, xid, err = b.timeToReadyType(ctx, set, set.lineCase, "transaction_summary_xlsx")
					return err
				})
				return err
			}
			csv := func() (err error) {
				ch, _, err = peakDuring(w, func() error {
					var err error
					ct, _, err = b.timeToReady(ctx, set, set.lineCase)
					return err
				})
				return err
			}
			steps := []func() error{csv, xlsx}
			if run%2 == 1 {
				steps = []func() error{xlsx, csv}
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("formats, %s: %w", countName(set.rows), err)
				}
			}
			row.xlsx.add(xt.Seconds())
			row.csv.add(ct.Seconds())
			row.ratio.add(xt.Seconds() / ct.Seconds())
			row.xlsxHWM.add(float64(xh))
			row.csvHWM.add(float64(ch))
			b.log.printf("  XLSX %s run %d/%d: %s, peak RSS %.1f MiB (CSV %s, %.1f MiB)", countName(set.rows), run+1, b.opts.runs,
				xt.Round(time.Millisecond), mib(xh), ct.Round(time.Millisecond), mib(ch))
			if run == b.opts.runs-1 {
				if err := b.ctl.QueryRow(ctx, `SELECT size_bytes FROM reports WHERE id = $1`, xid).Scan(&row.xlsxBytes); err != nil {
					return err
				}
			}
		}
		if _, largest := b.largest(r); set == largest {
			pr := &pdfRow{size: set.rows}
			r.pdf = pr
			for run := range b.opts.runs {
				pt, id, err := b.timeToReadyType(ctx, set, set.lineCase, "case_attestation")
				if err != nil {
					return fmt.Errorf("PDF, %s: %w", countName(set.rows), err)
				}
				t := time.Now()
				if _, err := groupScope(ctx, b.base, set.query); err != nil {
					return err
				}
				g := time.Since(t)
				pr.pdf.add(pt.Seconds())
				pr.group.add(g.Seconds())
				if err := b.ctl.QueryRow(ctx, `SELECT size_bytes FROM reports WHERE id = $1`, id).Scan(&pr.pdfBytes); err != nil {
					return err
				}
				b.log.printf("  PDF %s run %d/%d: %s (GROUP BY %s)", countName(set.rows), run+1, b.opts.runs,
					pt.Round(time.Millisecond), g.Round(time.Millisecond))
			}
		}
	}
	return nil
}

// --- row 11: gzip downloads -------------------------------------------------------------------

func (b *bench) measureGzip(ctx context.Context, r *results) error {
	big, set := b.largest(r)
	row := &gzipRow{size: big.size, fileBytes: big.fileBytes}
	r.gzip = row
	// Once, untimed: the gzip body decompresses to the file's bytes.
	sum, n, err := b.client.gunzipDownload(ctx, set.app.ForeignID, big.lastLineReport)
	if err != nil {
		return err
	}
	var want string
	if err := b.ctl.QueryRow(ctx, `SELECT sha256 FROM reports WHERE id = $1`, big.lastLineReport).Scan(&want); err != nil {
		return err
	}
	if n != big.fileBytes || sum != want {
		return fmt.Errorf("gzip download: %d bytes with SHA-256 %s, want %d bytes, %s", n, sum, big.fileBytes, want)
	}
	buf := make([]byte, 256<<10)
	for run := range b.opts.runs {
		var gzRates, plainRates series
		gz := func() error {
			t := time.Now()
			wire, err := b.client.downloadGzip(ctx, set.app.ForeignID, big.lastLineReport, buf)
			gzRates.add(float64(big.fileBytes) / 1e6 / time.Since(t).Seconds())
			row.wireBytes = wire
			return err
		}
		plain := func() error {
			t := time.Now()
			_, err := b.client.download(ctx, set.app.ForeignID, big.lastLineReport, buf)
			plainRates.add(float64(big.fileBytes) / 1e6 / time.Since(t).Seconds())
			return err
		}
		for i := range downloadPairs {
			steps := []func() error{gz, plain}
			if (run+i)%2 == 1 {
				steps = []func() error{plain, gz}
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return fmt.Errorf("gzip download: %w", err)
				}
			}
		}
		row.gz.add(gzRates.med())
		row.plain.add(plainRates.med())
		row.ratio.add(gzRates.med() / plainRates.med())
		b.log.printf("  gzip run %d/%d: %.0f MB/s of CSV (%.1f MB on the wire), uncompressed %.0f MB/s",
			run+1, b.opts.runs, gzRates.med(), float64(row.wireBytes)/1e6, plainRates.med())
	}
	return nil
}

// --- client --------------------------------------------------------------------------------------

// get GETs path and returns the body of a 200 answer.
func (c *apiClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, http.StatusOK)
	}
	return io.ReadAll(resp.Body)
}

func (c *apiClient) downloadReq(ctx context.Context, foreignID, reportID string, gz bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.base+"/api/applications/"+url.PathEscape(foreignID)+"/reports/"+url.PathEscape(reportID)+"/download", nil)
	if err != nil {
		return nil, err
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp, http.StatusOK)
	}
	if gz && resp.Header.Get("Content-Encoding") != "gzip" {
		resp.Body.Close()
		return nil, fmt.Errorf("download with Accept-Encoding: gzip: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	return resp, nil
}

// downloadTo saves a report's file at path.
func (c *apiClient) downloadTo(ctx context.Context, foreignID, reportID, path string) error {
	resp, err := c.downloadReq(ctx, foreignID, reportID, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// downloadGzip GETs a report's file with Accept-Encoding: gzip and reads the
// compressed body as it arrives; it returns the bytes on the wire.
func (c *apiClient) downloadGzip(ctx context.Context, foreignID, reportID string, buf []byte) (int64, error) {
	resp, err := c.downloadReq(ctx, foreignID, reportID, true)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.CopyBuffer(discard{}, resp.Body, buf)
}

// gunzipDownload GETs a report's file gzip-encoded and returns the SHA-256
// and size of what it decompresses to.
func (c *apiClient) gunzipDownload(ctx context.Context, foreignID, reportID string) (string, int64, error) {
	resp, err := c.downloadReq(ctx, foreignID, reportID, true)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		return "", 0, err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), n, nil
}
