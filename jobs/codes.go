package jobs

// Error codes recorded on a report (reports.error_code) that is failed,
// canceled or expired. They are part of the API: stable, snake_case, never
// renamed. This is the one list of them: the worker writes the first six,
// SQL in db writes the others, and a test fails when a migration writes a
// code that is not declared here.
const (
	// CodeStorageUnavailable: the object store could not be reached or
	// refused the upload.
	CodeStorageUnavailable = "storage_unavailable"
	// CodeDatabaseUnavailable: the database could not be reached.
	CodeDatabaseUnavailable = "database_unavailable"
	// CodeAmountOverflow: a subtotal or total does not fit in 64-bit minor units.
	CodeAmountOverflow = "amount_overflow"
	// CodeUnknownCurrency: a transaction's currency is not an ISO 4217 code
	// with a minor unit, so its amounts cannot be written exactly.
	CodeUnknownCurrency = "unknown_currency"
	// CodeUnknownReportType: the report's type is not in the portal configuration.
	CodeUnknownReportType = "unknown_report_type"
	// CodeBuildFailed: any other failure, including a timeout and an
	// unreadable scope snapshot.
	CodeBuildFailed = "build_failed"

	// CodeJobDiscarded: the report's job ran out of attempts without the
	// worker recording a failure. The river_job trigger writes it.
	CodeJobDiscarded = "job_discarded"
	// CodeCanceled: an administrator cancelled or deleted the report's
	// job. The river_job trigger writes it.
	CodeCanceled = "canceled"
	// CodeReportExpired: the report's file was deleted after its retention.
	// The query in db that expires reports writes it.
	CodeReportExpired = "report_expired"
)
