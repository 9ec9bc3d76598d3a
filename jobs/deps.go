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
