package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// RestoreStore is what Restore needs of a storage.Store.
type RestoreStore interface {
	ObjectReader
	ObjectStore
}

// Restoration is the outcome of Restore.
type Restoration struct {
	ReportID, Key string
	// Restored is true when the file was rebuilt and stored now, false
	// when it was already in the store (and left alone).
	Restored bool
	SHA256   string
	Size     int64
}

// Restore puts back the file of a ready report whose object is missing (a
// bucket lost and recreated empty, an object deleted by hand): it rebuilds
// the file from the report's snapshot, as Reproduce does, and stores it
// under the report's object key, so that downloads find it again. It keeps
// the upload only when its SHA-256 and size are the report's; a rebuild
// that differs is deleted again and returned as an error, never served. A
// report whose object is present is left alone (Restored false), so
// running Restore over every ready report is safe and can be repeated.
func Restore(ctx context.Context, pool *pgxpool.Pool, store RestoreStore, portal *config.Portal, keys *report.PseudonymKeys, reportID string) (*Restoration, error) {
	rep, err := db.GetReportByID(ctx, pool, reportID)
	if err != nil {
		return nil, fmt.Errorf("loading report %s: %w", reportID, err)
	}
	if rep.Status != db.ReportReady || rep.ObjectKey == nil || rep.SHA256 == nil || rep.SizeBytes == nil {
		return nil, fmt.Errorf("report %s is %s: only a ready report has a file to restore", rep.ID, rep.Status)
	}
	r := &Restoration{ReportID: rep.ID, Key: *rep.ObjectKey, SHA256: *rep.SHA256, Size: *rep.SizeBytes}
	obj, _, err := store.Get(ctx, r.Key, 0, -1)
	switch {
	case err == nil:
		obj.Close() // present: nothing to restore
		return r, nil
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("looking for the stored file: %w", err)
	}
	contentType := "application/octet-stream"
	if rep.ContentType != nil {
		contentType = *rep.ContentType
	}
	var w storage.Written
	err = db.WithSnapshotTx(ctx, pool, func(tx pgx.Tx) error {
		var err error
		w, err = store.Write(ctx, r.Key, contentType, func(out io.Writer) error {
			_, err := WriteReport(ctx, tx, portal, keys, rep, out)
			return err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rebuilding report %s: %w", rep.ID, err)
	}
	if w.SHA256 != r.SHA256 || w.Size != r.Size {
		if err := store.Delete(context.WithoutCancel(ctx), r.Key); err != nil {
			return nil, fmt.Errorf("report %s rebuilt to %d bytes sha256 %s, not the report's %d bytes sha256 %s, and deleting it failed: %w",
				rep.ID, w.Size, w.SHA256, r.Size, r.SHA256, err)
		}
		return nil, fmt.Errorf("report %s rebuilt to %d bytes sha256 %s, not the report's %d bytes sha256 %s: nothing restored",
			rep.ID, w.Size, w.SHA256, r.Size, r.SHA256)
	}
	r.Restored = true
	return r, nil
}
