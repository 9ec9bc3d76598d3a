package jobs

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
)

// scopeInfo is what the workbook and the attestation print about rep.
func scopeInfo(rep *db.Report, scope *db.Scope) report.ScopeInfo {
	by := rep.CreatedByName
	if rep.CreatedByEmail != "" {
		by += " <" + rep.CreatedByEmail + ">"
	}
	return report.ScopeInfo{
		ReportID: rep.ID, CaseID: scope.CaseID,
		PeriodStart: scope.PeriodStart, PeriodEnd: scope.PeriodEnd,
		DisclosureFlags: scope.DisclosureFlags, ContractFilters: scope.ContractFilters,
		DataAsOf: scope.DataAsOf, GeneratedAt: rep.CreatedAt, GeneratedBy: by,
	}
}

func scopeParams(rep *db.Report, scope *db.Scope) db.ScopeParams {
	return db.ScopeParams{
		ApplicationID:   rep.ApplicationID,
		PeriodStart:     scope.PeriodStart,
		PeriodEnd:       scope.PeriodEnd,
		ContractFilters: scope.ContractFilters,
		DataAsOf:        scope.DataAsOf,
		Snapshot:        deref(rep.CreationSnapshot),
	}
}

// scopeSink receives a scope in report order: transactions with line items,
// else the database's (contract, currency, kind) groups. The CSV and the
// workbook writers are both one.
type scopeSink interface {
	WriteTransaction(*report.Transaction) error
	WriteGroup(*report.Group) error
}

// streamScope feeds a report's scope into sink. Without line items the
// database aggregates (an index-only scan); the bytes are the same as from
// the rows.
func streamScope(ctx context.Context, q db.DBTX, sq db.ScopeParams, lineItems bool, sink scopeSink) error {
	if lineItems {
		var t report.Transaction
		return db.StreamScope(ctx, q, sq, func(r *db.ScopeRow) error {
			t = report.Transaction{
				ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind, OccurredAt: r.OccurredAt,
				ExternalID: r.ExternalID, Counterparty: r.Counterparty, Description: r.Description,
				AmountMinor: r.AmountMinor,
			}
			return sink.WriteTransaction(&t)
		})
	}
	var g report.Group
	return db.StreamScopeGroups(ctx, q, sq, func(r *db.ScopeGroup) error {
		g = report.Group{ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind, Count: r.Count, SumMinor: r.SumMinor}
		return sink.WriteGroup(&g)
	})
}

// writeTransactionSummaryXLSX writes the transaction summary as a
// workbook, from the same rows (or groups) and disclosure options as the
// CSV.
func writeTransactionSummaryXLSX(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, pseudonymKey []byte, out io.Writer, _ *config.Portal) (report.Summary, error) {
	opts := report.SummaryOptsFromFlags(pseudonymKey, scope.DisclosureFlags)
	ww, err := report.NewWorkbookWriter(out, report.WorkbookOpts{Summary: opts, Scope: scopeInfo(rep, scope), TempDir: os.TempDir()})
	if err != nil {
		return report.Summary{}, err
	}
	err = streamScope(ctx, q, scopeParams(rep, scope), opts.LineItems, ww)
	if err != nil {
		ww.Discard()
		return report.Summary{}, fmt.Errorf("writing transaction summary workbook: %w", err)
	}
	sum, err := ww.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing transaction summary workbook: %w", err)
	}
	return sum, nil
}

// dataFileBuilder is the builder whose files an attestation vouches for:
// the transaction summary CSV, the case's data file of record.
const dataFileBuilder = config.BuilderTransactionSummary

// writeCaseAttestation writes the case attestation PDF from the scope's
// groups (never line items). Its data files are the case's reports of
// every type built by dataFileBuilder that were ready when the attestation
// was requested (completed at or before its created_at) and still are,
// read in the same snapshot.
func writeCaseAttestation(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, _ []byte, out io.Writer, portal *config.Portal) (report.Summary, error) {
	var types []string
	for _, t := range portal.ReportTypes {
		if t.Builder == dataFileBuilder {
			types = append(types, t.Name)
		}
	}
	files, err := db.ListCaseDataFiles(ctx, q, db.ListCaseDataFilesParams{CaseID: rep.CaseID, Types: types, CompletedBefore: rep.CreatedAt})
	if err != nil {
		return report.Summary{}, err
	}
	opts := report.AttestationOpts{Scope: scopeInfo(rep, scope)}
	for _, f := range files {
		opts.DataFiles = append(opts.DataFiles, report.DataFile{ReportID: f.ReportID, ReportType: f.Type,
			CompletedAt: f.CompletedAt, SizeBytes: f.SizeBytes, SHA256: f.SHA256})
	}
	aw := report.NewAttestationWriter(out, opts)
	var g report.Group
	err = db.StreamScopeGroups(ctx, q, scopeParams(rep, scope), func(r *db.ScopeGroup) error {
		g = report.Group{ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind, Count: r.Count, SumMinor: r.SumMinor}
		return aw.WriteGroup(&g)
	})
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing case attestation: %w", err)
	}
	sum, err := aw.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing case attestation: %w", err)
	}
	return sum, nil
}
