package api

import "github.com/tally-compliance/tally/view"

// Report is the report object of the API (package view builds it, the same
// for webhook payloads). It never carries a storage URL or object key.
type Report = view.Report

// ReportError says why a report is failed, canceled or expired.
type ReportError = view.ReportError
