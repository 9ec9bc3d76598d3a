package jobs

import (
	"context"
	"fmt"
	"io"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
)

// writeFunc writes a report's file to out, reading from q.
type writeFunc func(ctx context.Context, q db.DBTX, out io.Writer) (report.Summary, error)

// WriteReport writes rep's file to out, as GenerateReportWorker builds it,
// and says what the file holds. The file depends only on what the report
// stores (its type, scope metadata and creation snapshot), so writing it
// again at any later time gives the same bytes: this is how a stored file
// is checked against its report. Read in a REPEATABLE READ transaction, so
// that the rows and the totals come from one snapshot.
func WriteReport(ctx context.Context, q db.DBTX, portal *config.Portal, rep *db.Report, out io.Writer) (report.Summary, error) {
	_, write, err := reportWriter(portal, rep)
	if err != nil {
		return report.Summary{}, err
	}
	return write(ctx, q, out)
}

// reportWriter returns rep's report type and the function that writes its
// file, or a permanent failure when the type or the scope is unusable.
func reportWriter(portal *config.Portal, rep *db.Report) (config.ReportType, writeFunc, error) {
	rt, ok := portal.ReportType(rep.Type)
	if !ok {
		return rt, nil, permanent(CodeUnknownReportType,
			fmt.Sprintf("report type %q is not offered by this portal", rep.Type), nil)
	}
	scope, err := rep.Scope()
	if err == nil {
		err = checkScope(&scope)
	}
	if err != nil {
		return rt, nil, permanent(CodeBuildFailed, "the report's scope snapshot is unreadable", err)
	}
	switch rt.Builder {
	case "transaction_summary":
		return rt, func(ctx context.Context, q db.DBTX, out io.Writer) (report.Summary, error) {
			return writeTransactionSummary(ctx, q, rep, &scope, out)
		}, nil
	case "activity_log":
		return rt, func(ctx context.Context, q db.DBTX, out io.Writer) (report.Summary, error) {
			return writeActivityLog(ctx, q, rep, &scope, out)
		}, nil
	}
	return rt, nil, permanent(CodeUnknownReportType,
		fmt.Sprintf("report type %q uses builder %q, which this worker does not know", rep.Type, rt.Builder), nil)
}
