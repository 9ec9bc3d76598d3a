package report

// The package's tests (package report_test) check these unexported functions
// directly: against encoding/csv, by fuzzing and by benchmarks.
var (
	AppendField     = appendField
	AppendTextField = appendTextField
	FormatAmount    = formatAmount
)
