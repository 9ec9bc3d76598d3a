package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// ObjectReader opens a stored object (storage.Store.Get).
type ObjectReader interface {
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storage.ObjectInfo, error)
}

// Reproduction is the outcome of rebuilding a report.
type Reproduction struct {
	ReportID string
	// Match is true when the rebuilt file has the stored SHA-256 and size
	// and the stored object's bytes.
	Match bool
	// StoredSHA256 and StoredSize are the report's; SHA256 and Size the
	// rebuilt file's.
	StoredSHA256, SHA256 string
	StoredSize, Size     int64
	// FirstDiff is the offset of the first byte where the rebuilt file and
	// the stored object differ (one of them may end there), or -1.
	FirstDiff int64
}

// Reproduce rebuilds a ready report from what it stores (WriteReport, in one
// snapshot) into a hashing writer, compares it byte by byte with the stored
// object streamed alongside, and compares the digest and size with the
// report's. Nothing is written anywhere.
func Reproduce(ctx context.Context, pool *pgxpool.Pool, store ObjectReader, portal *config.Portal, keys *report.PseudonymKeys, reportID string) (*Reproduction, error) {
	rep, err := db.GetReportByID(ctx, pool, reportID)
	if err != nil {
		return nil, fmt.Errorf("loading report %s: %w", reportID, err)
	}
	if rep.Status != db.ReportReady || rep.ObjectKey == nil || rep.SHA256 == nil || rep.SizeBytes == nil {
		return nil, fmt.Errorf("report %s is %s: only a ready report has a file to compare", rep.ID, rep.Status)
	}
	obj, _, err := store.Get(ctx, *rep.ObjectKey, 0, *rep.SizeBytes)
	if err != nil {
		return nil, fmt.Errorf("opening the stored file: %w", err)
	}
	defer obj.Close()
	cw := &compareWriter{stored: obj, h: sha256.New(), diff: -1}
	err = db.WithSnapshotTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := WriteReport(ctx, tx, portal, keys, rep, cw)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rebuilding report %s: %w", rep.ID, err)
	}
	if err := cw.finish(); err != nil {
		return nil, err
	}
	r := &Reproduction{
		ReportID: rep.ID, StoredSHA256: *rep.SHA256, StoredSize: *rep.SizeBytes,
		SHA256: hex.EncodeToString(cw.h.Sum(nil)), Size: cw.n, FirstDiff: cw.diff,
	}
	r.Match = r.FirstDiff < 0 && r.SHA256 == r.StoredSHA256 && r.Size == r.StoredSize
	return r, nil
}

// compareWriter hashes what is written and compares it with stored.
type compareWriter struct {
	stored io.Reader
	h      hash.Hash
	n      int64
	diff   int64
	buf    []byte
	eof    bool
}

func (c *compareWriter) Write(p []byte) (int, error) {
	c.h.Write(p)
	if c.diff < 0 {
		if cap(c.buf) < len(p) {
			c.buf = make([]byte, len(p))
		}
		b := c.buf[:len(p)]
		k, err := io.ReadFull(c.stored, b)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("reading the stored file: %w", err)
		}
		if k < len(p) {
			c.eof = true
		}
		for i := 0; i < len(p); i++ {
			if i >= k || p[i] != b[i] {
				c.diff = c.n + int64(i)
				break
			}
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}

// finish notes a stored object longer than the rebuilt file.
func (c *compareWriter) finish() error {
	if c.diff >= 0 || c.eof {
		return nil
	}
	var one [1]byte
	k, err := io.ReadFull(c.stored, one[:])
	if k == 1 {
		c.diff = c.n
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the stored file: %w", err)
	}
	return nil
}

// ReproduceReportsArgs asks a worker to rebuild a small random sample of
// recent ready reports and compare them with their stored files.
type ReproduceReportsArgs struct{}

// Kind is the job kind.
func (ReproduceReportsArgs) Kind() string { return "reproduce_reports" }

// InsertOpts are the per-kind defaults.
func (ReproduceReportsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaint, MaxAttempts: 1}
}

// ReproduceMetrics receives the outcome of each reproduction.
type ReproduceMetrics interface {
	ReportReproduced(reportType string, match bool)
}

// DefaultReproduceSample is how many reports one reproduce_reports run rebuilds.
const DefaultReproduceSample = 3

// ReproduceReportsWorker rebuilds a sample of the reports made ready in the
// last week: a mismatch (expected never) is logged as an error and counted.
type ReproduceReportsWorker struct {
	river.WorkerDefaults[ReproduceReportsArgs]

	Pool   *pgxpool.Pool
	Store  ObjectReader
	Portal *config.Portal
	// PseudonymKeys rebuild counterparty pseudonyms, as the report's build did.
	PseudonymKeys *report.PseudonymKeys
	Logger        *slog.Logger
	Metrics       ReproduceMetrics
	// Sample is the number of reports per run; zero means DefaultReproduceSample.
	Sample int
}

// Timeout bounds one run.
func (w *ReproduceReportsWorker) Timeout(*river.Job[ReproduceReportsArgs]) time.Duration {
	return 30 * time.Minute
}

// Work rebuilds the sample.
func (w *ReproduceReportsWorker) Work(ctx context.Context, job *river.Job[ReproduceReportsArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := w.Sample
	if n <= 0 {
		n = DefaultReproduceSample
	}
	ids, err := db.SampleRecentReadyReports(ctx, w.Pool, 7*24*time.Hour, n)
	if err != nil {
		return err
	}
	for _, s := range ids {
		r, err := Reproduce(ctx, w.Pool, w.Store, w.Portal, w.PseudonymKeys, s.ID)
		if err != nil {
			logger.WarnContext(ctx, "could not reproduce report", slog.String("report_id", s.ID), slog.Any("error", err))
			continue
		}
		if w.Metrics != nil {
			w.Metrics.ReportReproduced(s.Type, r.Match)
		}
		if !r.Match {
			logger.ErrorContext(ctx, "report does not reproduce", slog.String("report_id", r.ReportID),
				slog.Int64("first_diff", r.FirstDiff), slog.String("sha256", r.SHA256), slog.String("stored_sha256", r.StoredSHA256),
				slog.Int64("size", r.Size), slog.Int64("stored_size", r.StoredSize))
		}
	}
	return nil
}
