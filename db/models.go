package db

import (
	"encoding/json"
	"time"
)

// Permission names, as stored and as shown by GET /auth/me.
const (
	PermReportsCreate   = "reports:create"
	PermReportsList     = "reports:list"
	PermReportsDownload = "reports:download"
)

// BucketAuditor is the only application-level permission bucket.
const BucketAuditor = "auditor"

// Case statuses.
const (
	CaseDraft    = "draft"
	CaseApproved = "approved"
	CaseRevoked  = "revoked"
	CaseClosed   = "closed"
)

// Report statuses.
const (
	ReportPending  = "pending"
	ReportRunning  = "running"
	ReportReady    = "ready"
	ReportFailed   = "failed"
	ReportCanceled = "canceled"
	ReportExpired  = "expired"
)

// Activity event kinds.
const (
	EventReportCreated    = "report.created"
	EventReportGenerated  = "report.generated"
	EventReportFailed     = "report.failed"
	EventReportDownloaded = "report.downloaded"
	EventReportCanceled   = "report.canceled"
	EventReportExpired    = "report.expired"
	EventReportRequeued   = "report.requeued"
	// EventReportDownloadRefused is an auditor's download refused by the
	// case rules (revoked, closed, not assigned, access window closed).
	EventReportDownloadRefused = "report.download_refused"
	// EventReportManifestViewed is a read of a report's signed manifest.
	EventReportManifestViewed = "report.manifest_viewed"
)

// TransactionKinds lists the allowed values of transactions.kind.
var TransactionKinds = []string{"payment", "refund", "fee", "chargeback", "payout", "adjustment"}

// Organization is a tenant.
type Organization struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
}

// Application is an organization's application; ForeignID is its route segment.
type Application struct {
	ID        string    `db:"id"`
	OrgID     string    `db:"org_id"`
	ForeignID string    `db:"foreign_id"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
}

// User is a person who signs in.
type User struct {
	ID        string    `db:"id"`
	Email     string    `db:"email"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
}

// Grant is a user's auditor-bucket permissions on one application.
type Grant struct {
	ApplicationID string   `db:"application_id"`
	ForeignID     string   `db:"foreign_id"`
	Name          string   `db:"name"`
	Bucket        string   `db:"bucket"`
	Permissions   []string `db:"permissions"`
}

// Principal is the authenticated caller of a request.
type Principal struct {
	SessionID        string
	User             User
	Organization     Organization
	OwnerPermissions []string
}

// Case is a disclosure case.
type Case struct {
	ID                string     `db:"id"`
	OrgID             string     `db:"org_id"`
	ApplicationID     string     `db:"application_id"`
	Title             string     `db:"title"`
	Status            string     `db:"status"`
	PeriodStart       time.Time  `db:"period_start"`
	PeriodEnd         time.Time  `db:"period_end"`
	DisclosureFlags   []string   `db:"disclosure_flags"`
	ContractFilters   []string   `db:"contract_filters"`
	AccessWindowStart time.Time  `db:"access_window_start"`
	AccessWindowEnd   time.Time  `db:"access_window_end"`
	ApprovedAt        *time.Time `db:"approved_at"`
	ApprovedBy        *string    `db:"approved_by"`
	CreatedAt         time.Time  `db:"created_at"`
}

// Scope is the snapshot of a case that a report is built from. It is stored
// in the report's metadata at creation and never changes afterwards.
type Scope struct {
	CaseID          string    `json:"case_id"`
	PeriodStart     time.Time `json:"period_start"`
	PeriodEnd       time.Time `json:"period_end"`
	DisclosureFlags []string  `json:"disclosure_flags"`
	ContractFilters []string  `json:"contract_filters"`
	DataAsOf        time.Time `json:"data_as_of"`
	// PseudonymKeyID names the master key the report's counterparty
	// pseudonyms were derived from. The worker records it when the report
	// becomes ready, so that a rebuild after a key rotation uses the same
	// key; empty until then.
	PseudonymKeyID string `json:"pseudonym_key_id,omitempty"`
}

// HasFlag reports whether the scope carries disclosure flag f.
func (s *Scope) HasFlag(f string) bool {
	for _, x := range s.DisclosureFlags {
		if x == f {
			return true
		}
	}
	return false
}

// ReadyMetadata is what a finished build adds to a report's metadata, next to
// its Scope.
type ReadyMetadata struct {
	// Format is the file format (the report type's).
	Format string `json:"format"`
	// RowCount is the number of transactions or events the file covers.
	RowCount int64 `json:"row_count"`
	// Totals are the per-currency totals of a transaction_summary, keyed by
	// ISO 4217 code; empty, not null, for other report types.
	Totals map[string]CurrencyTotal `json:"totals"`
	// PseudonymKeyID names the master key the file's counterparty
	// pseudonyms were derived from (Scope.PseudonymKeyID).
	PseudonymKeyID string `json:"pseudonym_key_id,omitempty"`
}

// CurrencyTotal is the total of one currency in a report's metadata.
type CurrencyTotal struct {
	Count  int64  `json:"count"`
	Amount string `json:"amount"` // exact decimal, as in the file
}

// Report is a row of reports joined with its creator.
type Report struct {
	ID             string          `db:"id"`
	OrgID          string          `db:"org_id"`
	ApplicationID  string          `db:"application_id"`
	CaseID         string          `db:"case_id"`
	Type           string          `db:"type"`
	Status         string          `db:"status"`
	Metadata       json.RawMessage `db:"metadata"`
	CreatedBy      string          `db:"created_by"`
	CreatedByEmail string          `db:"created_by_email"`
	CreatedByName  string          `db:"created_by_name"`
	CreatedAt      time.Time       `db:"created_at"`
	UpdatedAt      time.Time       `db:"updated_at"`
	StartedAt      *time.Time      `db:"started_at"`
	CompletedAt    *time.Time      `db:"completed_at"`
	ExpiresAt      *time.Time      `db:"expires_at"`
	SizeBytes      *int64          `db:"size_bytes"`
	SHA256         *string         `db:"sha256"`
	ContentType    *string         `db:"content_type"`
	ObjectKey      *string         `db:"object_key"`
	JobID          *int64          `db:"job_id"`
	ErrorCode      *string         `db:"error_code"`
	ErrorMessage   *string         `db:"error_message"`
	ErrorRetryable *bool           `db:"error_retryable"`
	RequestID      *string         `db:"request_id"`
	// CreationSnapshot is the pg_snapshot (text form) taken when the report
	// was created: the transactions whose rows the report holds are those
	// visible in it. Nil for reports created before it was recorded.
	CreationSnapshot *string `db:"creation_snapshot"`
}

// Scope decodes the scope snapshot from the report's metadata.
func (r *Report) Scope() (Scope, error) {
	var s Scope
	err := json.Unmarshal(r.Metadata, &s)
	return s, err
}

// Transaction is one row of transactions, as imported.
type Transaction struct {
	ApplicationID string
	ContractID    string
	ExternalID    string
	OccurredAt    time.Time
	AmountMinor   int64
	Currency      string
	Kind          string
	Counterparty  string
	Description   string
	// IngestedAt is when the row was ingested: required. ingest.Import
	// uses its transaction's now(), the database's clock.
	IngestedAt time.Time
}
