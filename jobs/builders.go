package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// buildFunc writes a report's file from its scope, reading on q (the
// snapshot transaction), and returns what the file holds. pseudonymKey is
// the report's key for counterparty pseudonyms; portal is the portal
// configuration, for builders that look at other report types.
type buildFunc func(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, pseudonymKey []byte, out io.Writer, portal *config.Portal) (report.Summary, error)

// builders maps a report type's builder (config's report_types[].builder)
// to the function that writes its file.
var builders = map[string]buildFunc{
	config.BuilderTransactionSummary:     writeTransactionSummary,
	config.BuilderActivityLog:            writeActivityLog,
	config.BuilderTransactionSummaryXLSX: writeTransactionSummaryXLSX, // formats.go
	config.BuilderCaseAttestation:        writeCaseAttestation,        // formats.go
}

// oneQuery are the builders that read their file with a single query, which
// sees one snapshot by itself: they need no snapshot transaction (whose
// BEGIN and ROLLBACK are two more round trips per report).
var oneQuery = map[string]bool{
	config.BuilderTransactionSummary:     true, // streamScope
	config.BuilderActivityLog:            true, // ListCaseEvents
	config.BuilderTransactionSummaryXLSX: true, // streamScope
}

// BuilderNames returns the names of the builders this worker knows, sorted.
func BuilderNames() []string {
	return slices.Sorted(maps.Keys(builders))
}

// builtFile describes an uploaded report file.
type builtFile struct {
	key         string
	format      string
	contentType string
	size        int64
	sha256      string
	summary     report.Summary
	// pseudonymKeyID names the master key of the file's pseudonyms.
	pseudonymKeyID string
}

// WriteReport writes rep's file to out, as GenerateReportWorker builds it
// with keys, and says what the file holds. The file depends only on what the
// report stores (its type, scope metadata, pseudonym key id and creation
// snapshot) and the keys, so writing it again at any later time gives the
// same bytes: this is how a stored file is checked against its report. Run
// it in db.WithSnapshotTx, so that the rows and the totals come from one
// snapshot.
func WriteReport(ctx context.Context, q db.DBTX, portal *config.Portal, keys *report.PseudonymKeys, rep *db.Report, out io.Writer) (report.Summary, error) {
	_, _, write, err := reportWriter(portal, keys, rep, nil)
	if err != nil {
		return report.Summary{}, err
	}
	return write(ctx, q, out)
}

// reportWriter returns rep's report type, the id of its pseudonym key and
// the function that writes its file, or a permanent failure when the type,
// the scope or the key is unusable. A report keeps the pseudonym key it was
// first built with (metadata.pseudonym_key_id), so a rebuild after a key
// rotation writes the same bytes; a report not built yet gets the current
// key.
//
// With par, a line-items transaction summary is read in ranges at once
// (writeTransactionSummaryParallel): the same bytes, sooner.
func reportWriter(portal *config.Portal, keys *report.PseudonymKeys, rep *db.Report, par *parallelScan) (config.ReportType, string, writeFunc, error) {
	rt, ok := portal.ReportType(rep.Type)
	if !ok {
		return rt, "", nil, permanent(CodeUnknownReportType,
			fmt.Sprintf("report type %q is not offered by this portal", rep.Type), nil)
	}
	scope, err := rep.Scope()
	if err == nil {
		err = checkScope(&scope)
	}
	if err != nil {
		return rt, "", nil, permanent(CodeBuildFailed, "the report's scope snapshot is unreadable", err)
	}
	build, ok := builders[rt.Builder]
	if !ok {
		return rt, "", nil, permanent(CodeUnknownReportType,
			fmt.Sprintf("report type %q uses builder %q, which this worker does not know", rep.Type, rt.Builder), nil)
	}
	if keys == nil {
		return rt, "", nil, permanent(CodeBuildFailed, "the worker has no pseudonym keys", nil)
	}
	keyID := cmp.Or(scope.PseudonymKeyID, keys.CurrentID())
	pseudonymKey, err := keys.ReportKey(keyID, rep.ID)
	if err != nil {
		return rt, "", nil, permanent(CodeBuildFailed,
			fmt.Sprintf("the report's pseudonym key %q is not configured on this worker", keyID), err)
	}
	return rt, keyID, func(ctx context.Context, q db.DBTX, out io.Writer) (report.Summary, error) {
		if rt.BOM {
			if _, err := io.WriteString(out, report.UTF8BOM); err != nil {
				return report.Summary{}, err
			}
		}
		if par != nil && par.n > 1 && rt.Builder == config.BuilderTransactionSummary {
			return writeTransactionSummaryParallel(ctx, par, rep, &scope, pseudonymKey, out)
		}
		return build(ctx, q, rep, &scope, pseudonymKey, out, portal)
	}, nil
}

// writeFunc writes one report's file to out, reading on q.
type writeFunc func(ctx context.Context, q db.DBTX, out io.Writer) (report.Summary, error)

// build streams the report's file, written from a consistent snapshot of
// its scope, into the object store, under a key of this run's own (runID):
// a file that another run committed is never replaced. When it returns an
// error, no object of this run is left, except after a crash.
//
// A job of QueueLarge reads its scope on up to w.Parallelism connections.
func (w *GenerateReportWorker) build(ctx context.Context, rep *db.Report, runID string, large bool) (*builtFile, error) {
	var par *parallelScan
	if large && w.Parallelism > 1 {
		par = &parallelScan{pool: w.Pool, n: w.Parallelism, spillDir: w.SpillDir, spillMax: cmp.Or(w.SpillMax, DefaultSpillMax)}
	}
	rt, keyID, write, err := reportWriter(w.Portal, w.PseudonymKeys, rep, par)
	if err != nil {
		return nil, err
	}

	file := &builtFile{
		key:            storage.ReportKey(rep.OrgID, rep.ApplicationID, rep.ID, runID, rt.Format),
		format:         rt.Format,
		contentType:    rt.ContentType(),
		pseudonymKeyID: keyID,
	}
	upload := func(q db.DBTX) error {
		written, err := w.Store.Write(ctx, file.key, file.contentType, func(out io.Writer) error {
			var err error
			file.summary, err = write(ctx, q, out)
			return err
		})
		file.size, file.sha256 = written.Size, written.SHA256
		return err
	}
	if oneQuery[rt.Builder] {
		err = upload(w.Pool)
	} else {
		err = db.WithSnapshotTx(ctx, w.Pool, func(tx pgx.Tx) error { return upload(tx) })
	}
	if err != nil {
		return nil, err
	}
	return file, nil
}

func checkScope(s *db.Scope) error {
	switch {
	case s.CaseID == "":
		return errors.New("scope has no case_id")
	case s.PeriodStart.IsZero() || s.PeriodEnd.IsZero() || !s.PeriodEnd.After(s.PeriodStart):
		return errors.New("scope has no valid period")
	case s.DataAsOf.IsZero():
		return errors.New("scope has no data_as_of")
	}
	return nil
}

func writeTransactionSummary(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, pseudonymKey []byte, out io.Writer, _ *config.Portal) (report.Summary, error) {
	opts := report.SummaryOptsFromFlags(pseudonymKey, scope.DisclosureFlags)
	sw := report.NewSummaryWriter(out, opts)
	err := streamScope(ctx, q, scopeParams(rep, scope), opts.LineItems, sw)
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing transaction summary: %w", err)
	}
	sum, err := sw.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing transaction summary: %w", err)
	}
	return sum, nil
}

func writeActivityLog(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, _ []byte, out io.Writer, _ *config.Portal) (report.Summary, error) {
	aw := report.NewActivityLogWriter(out)
	var e report.Event
	err := db.ListCaseEvents(ctx, q, rep.CaseID, scope.DataAsOf, deref(rep.CreationSnapshot), func(ev db.Event) error {
		var req struct {
			ClientIP  string `json:"client_ip"`
			UserAgent string `json:"user_agent"`
		}
		if len(ev.Details) > 0 {
			if err := json.Unmarshal(ev.Details, &req); err != nil {
				return fmt.Errorf("reading details of event %d: %w", ev.ID, err)
			}
		}
		if ev.Hash == nil {
			// The file must not depend on when it is written: every event
			// of the snapshot is chained before the build starts
			// (GenerateReportWorker.awaitChain), never while it runs.
			return fmt.Errorf("event %d: %w", ev.ID, ErrEventsNotChained)
		}
		e = report.Event{OccurredAt: ev.OccurredAt, Kind: ev.Kind, ReportID: ev.ReportID, ReportType: ev.ReportType,
			ActorID: deref(ev.ActorID), ActorEmail: deref(ev.ActorEmail), ActorName: deref(ev.ActorName),
			ClientIP: req.ClientIP, UserAgent: req.UserAgent, Hash: *ev.Hash}
		return aw.WriteEvent(&e)
	})
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing activity log: %w", err)
	}
	sum, err := aw.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing activity log: %w", err)
	}
	return sum, nil
}

// ErrEventsNotChained means an activity event of a report's snapshot has
// no chain position yet, so its hash cannot be written.
var ErrEventsNotChained = errors.New("activity event not chained yet")

// needsChain lists the builders that write event hashes: before one runs,
// every event of the report's snapshot must be chained.
var needsChain = map[string]bool{config.BuilderActivityLog: true}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
