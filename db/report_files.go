package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ReportFile is what decides whether an object belongs to a report: the
// report's status and the key its finishing transaction recorded.
type ReportFile struct {
	ID        string  `db:"id"`
	Status    string  `db:"status"`
	ObjectKey *string `db:"object_key"`
}

// ListReportFiles returns the status and object key of each report of ids
// that exists, by id.
func ListReportFiles(ctx context.Context, q DBTX, ids []string) (map[string]ReportFile, error) {
	rows, _ := q.Query(ctx, `SELECT id, status, object_key FROM reports WHERE id = ANY($1)`, ids)
	files, err := pgx.CollectRows(rows, pgx.RowToStructByName[ReportFile])
	if err != nil {
		return nil, fmt.Errorf("listing report files: %w", translate(err))
	}
	out := make(map[string]ReportFile, len(files))
	for _, f := range files {
		out[f.ID] = f
	}
	return out, nil
}
