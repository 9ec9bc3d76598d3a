package jobs

import (
	"context"
	"io"
	"time"

	"github.com/tally-compliance/tally/storage"
)

// ObjectStore is what the report workers need of a storage.Store.
type ObjectStore interface {
	Write(ctx context.Context, key, contentType string, write func(io.Writer) error) (storage.Written, error)
	Delete(ctx context.Context, key string) error
}

// ReportMetrics receives the outcome of report jobs. The worker package
// implements it with Prometheus collectors.
type ReportMetrics interface {
	// ReportReady is called once a report is committed ready.
	ReportReady(reportType string, took time.Duration, sizeBytes int64)
	// ReportFailed is called once a report is committed failed.
	ReportFailed(reportType, code string)
}

// SweepStore is what SweepObjectsWorker needs of a storage.Store.
type SweepStore interface {
	ListInfo(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error
	ListUploads(ctx context.Context, prefix string, fn func(storage.Upload) error) error
	AbortUpload(ctx context.Context, u storage.Upload) error
	Delete(ctx context.Context, key string) error
}

// SweepMetrics receives what SweepObjectsWorker deleted. The worker package
// implements it with Prometheus counters.
type SweepMetrics interface {
	// ObjectsSwept counts objects deleted for a reason (SweepReason*).
	ObjectsSwept(reason string, n int)
	// UploadsAborted counts incomplete multipart uploads aborted.
	UploadsAborted(n int)
}
