package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DataFile is a ready report file that another report (the case
// attestation) vouches for by its SHA-256.
type DataFile struct {
	ReportID    string    `db:"id"`
	Type        string    `db:"type"`
	CompletedAt time.Time `db:"completed_at"`
	SizeBytes   int64     `db:"size_bytes"`
	SHA256      string    `db:"sha256"`
}

// ListCaseDataFilesParams select a case's data files.
type ListCaseDataFilesParams struct {
	CaseID string
	// Types are the report types that count as data files.
	Types []string
	// CompletedBefore excludes files that became ready after it, so that a
	// rerun of the attestation lists the same files.
	CompletedBefore time.Time
}

// ListCaseDataFiles returns the case's ready files of the given types that
// were completed at or before CompletedBefore, oldest first.
func ListCaseDataFiles(ctx context.Context, q DBTX, p ListCaseDataFilesParams) ([]DataFile, error) {
	rows, err := q.Query(ctx, `
SELECT id, type, completed_at, size_bytes, sha256
FROM reports
WHERE case_id = $1 AND type = ANY($2) AND status = 'ready'
  AND sha256 IS NOT NULL AND completed_at <= $3
ORDER BY completed_at, id`, p.CaseID, p.Types, p.CompletedBefore)
	if err != nil {
		return nil, fmt.Errorf("listing case data files: %w", translate(err))
	}
	files, err := pgx.CollectRows(rows, pgx.RowToStructByName[DataFile])
	if err != nil {
		return nil, fmt.Errorf("listing case data files: %w", translate(err))
	}
	return files, nil
}
