package db

// Old names kept while jobs/generate_report.go and jobs/expire_reports.go are
// split on another branch, so that both branches compile on their own.
//
// TODO(merge): remove this file and rename the remaining uses.

// InsertEvent is CreateEvent's old name. TODO(merge): remove
var InsertEvent = CreateEvent

// InsertEventParams is CreateEventParams' old name. TODO(merge): remove
type InsertEventParams = CreateEventParams

// InsertReportEvent is CreateReportEvent's old name. TODO(merge): remove
var InsertReportEvent = CreateReportEvent

// MarkReadyParams is MarkReportReadyParams' old name. TODO(merge): remove
type MarkReadyParams = MarkReportReadyParams

// ScopeQuery is ScopeParams' old name. TODO(merge): remove
type ScopeQuery = ScopeParams
