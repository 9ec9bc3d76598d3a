package report

// The package's tests (package report_test) check these unexported functions
// directly: against encoding/csv, by fuzzing and by benchmarks.
var (
	AppendField     = appendField
	AppendTextField = appendTextField
	FormatAmount    = formatAmount
)

// Pseudonym returns the pseudonym of counterparty in the report keyed by
// reportID, as a SummaryWriter writes it; an empty counterparty stays empty.
func Pseudonym(reportID, counterparty string) string {
	if counterparty == "" {
		return ""
	}
	return string(newPseudonymizer(reportID).append(nil, counterparty))
}
