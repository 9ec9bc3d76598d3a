package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// TestClassify: each class of error gets its code, its message for the
// report's reader, and whether asking again may help (retryable), whether
// retrying the job can help at all (permanent) and whether waiting for a
// dependency helps (outage).
func TestClassify(t *testing.T) {
	t.Parallel()
	unknownType := permanent(CodeUnknownReportType, "report type \"x\" is not offered by this portal", nil)
	tests := []struct {
		name      string
		err       error
		code      string
		message   string
		retryable bool
		permanent bool
		outage    bool
	}{
		{"ClassifiedKeepsItsClass", fmt.Errorf("building: %w", unknownType),
			CodeUnknownReportType, "report type \"x\" is not offered by this portal", false, true, false},
		{"AmountOverflowInGo", fmt.Errorf("writing: %w", report.ErrAmountOverflow),
			CodeAmountOverflow, "a subtotal or total of the report does not fit in 64-bit minor units", false, true, false},
		{"AmountOverflowInDatabase", fmt.Errorf("streaming: %w", db.ErrOutOfRange),
			CodeAmountOverflow, "a subtotal or total of the report does not fit in 64-bit minor units", false, true, false},
		{"UnknownCurrency", fmt.Errorf("writing: %w", &report.UnknownCurrencyError{Currency: "ABC"}),
			CodeUnknownCurrency, `the report's transactions include currency "ABC", which is not an ISO 4217 code with a minor unit: their amounts cannot be written exactly`, false, true, false},
		{"StoreUnreachable", fmt.Errorf("uploading: %w", storage.ErrUnavailable),
			CodeStorageUnavailable, "the file store was unavailable", true, false, true},
		{"StoreTimeoutIsAnOutage", fmt.Errorf("uploading: %w: %w", storage.ErrUnavailable, context.DeadlineExceeded),
			CodeStorageUnavailable, "the file store was unavailable", true, false, true},
		{"BucketMissing", fmt.Errorf("uploading: %w", storage.ErrNotFound),
			CodeStorageUnavailable, "the file store was unavailable", true, false, false},
		{"DatabaseUnreachable", fmt.Errorf("loading report: %w", db.ErrUnavailable),
			CodeDatabaseUnavailable, "the database was unavailable", true, false, true},
		{"Timeout", fmt.Errorf("streaming: %w", context.DeadlineExceeded),
			CodeBuildFailed, "report generation took longer than 15m0s", true, false, false},
		{"AnythingElse", errors.New("boom"),
			CodeBuildFailed, "report generation failed", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := classify(tt.err, 15*time.Minute)
			if f.code != tt.code || f.message != tt.message {
				t.Errorf("code %q, message %q; want %q, %q", f.code, f.message, tt.code, tt.message)
			}
			if f.retryable != tt.retryable || f.permanent != tt.permanent || f.outage != tt.outage {
				t.Errorf("retryable %v, permanent %v, outage %v; want %v, %v, %v",
					f.retryable, f.permanent, f.outage, tt.retryable, tt.permanent, tt.outage)
			}
			if !errors.Is(f, tt.err) && !errors.Is(tt.err, f) {
				t.Errorf("the failure %v does not keep the error %v in its chain", f, tt.err)
			}
		})
	}
}
