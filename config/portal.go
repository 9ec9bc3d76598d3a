package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/goccy/go-yaml"
)

//go:embed portal.default.yaml
var defaultPortal []byte

// ReportType is one kind of report the portal offers: which builder writes
// its files, in which format, and how a download presents them.
type ReportType struct {
	Name    string `yaml:"name"`
	Builder string `yaml:"builder"`
	// Format is the file format, one of Formats; the builder must write it.
	Format string `yaml:"format"`
	// MIMEType is the Content-Type of the files; empty means the format's.
	MIMEType string `yaml:"content_type"`
	// Extension is the download file name's extension, without the dot;
	// empty means the format's.
	Extension string `yaml:"extension"`
	// BOM starts a CSV file with a UTF-8 byte-order mark, so that Windows
	// Excel reads it as UTF-8. Off by default: existing files keep their bytes.
	BOM         bool   `yaml:"bom"`
	Description string `yaml:"description"`
}

// FileFormat is what a file format implies for a download.
type FileFormat struct {
	ContentType string
	Extension   string
}

// Formats are the file formats builders write, with their default content
// type and file name extension.
var Formats = map[string]FileFormat{
	"csv":  {ContentType: "text/csv; charset=utf-8", Extension: "csv"},
	"xlsx": {ContentType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Extension: "xlsx"},
	"pdf":  {ContentType: "application/pdf", Extension: "pdf"},
}

// ContentType returns the MIME type of the type's files.
func (t ReportType) ContentType() string {
	if t.MIMEType != "" {
		return t.MIMEType
	}
	if f, ok := Formats[t.Format]; ok {
		return f.ContentType
	}
	return "application/octet-stream"
}

// FileExtension returns the extension of the type's download file names.
func (t ReportType) FileExtension() string {
	if t.Extension != "" {
		return t.Extension
	}
	if f, ok := Formats[t.Format]; ok {
		return f.Extension
	}
	return "bin"
}

// Portal is the portal configuration: the report types, the known
// disclosure flags and the retention of report files.
type Portal struct {
	ReportTypes     []ReportType `yaml:"report_types"`
	DisclosureFlags []string     `yaml:"disclosure_flags"`
	RetentionDays   int          `yaml:"retention_days"`
}

// Report builders, the code that writes a report type's file. A report type
// of the portal configuration names one in its builder field.
const (
	BuilderTransactionSummary     = "transaction_summary"
	BuilderActivityLog            = "activity_log"
	BuilderTransactionSummaryXLSX = "transaction_summary_xlsx"
	BuilderCaseAttestation        = "case_attestation"
)

// Builders are the report builders the worker implements, the one list that
// portal configurations are checked against.
var Builders = []string{BuilderTransactionSummary, BuilderActivityLog, BuilderTransactionSummaryXLSX, BuilderCaseAttestation}

// BuilderFormats is the one format each builder writes; a report type must
// name it.
var BuilderFormats = map[string]string{
	BuilderTransactionSummary:     "csv",
	BuilderActivityLog:            "csv",
	BuilderTransactionSummaryXLSX: "xlsx",
	BuilderCaseAttestation:        "pdf",
}

var (
	typeName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	extension = regexp.MustCompile(`^[a-z0-9]{1,10}$`)
	mimeType  = regexp.MustCompile(`^[a-z0-9.+-]+/[a-z0-9.+-]+(; ?charset=[a-z0-9-]+)?$`)
)

// LoadPortal reads the portal configuration from path, or the built-in
// default when path is empty.
func LoadPortal(path string) (*Portal, error) {
	data := defaultPortal
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading portal configuration: %w", err)
		}
	}
	return ParsePortal(data)
}

// ParsePortal parses and checks a portal configuration.
func ParsePortal(data []byte) (*Portal, error) {
	var p Portal
	if err := yaml.NewDecoder(bytes.NewReader(data), yaml.Strict()).Decode(&p); err != nil {
		return nil, fmt.Errorf("parsing portal configuration: %w", err)
	}
	if p.RetentionDays == 0 {
		p.RetentionDays = 30
	}
	if p.RetentionDays < 0 {
		return nil, fmt.Errorf("portal configuration: retention_days must be positive")
	}
	if len(p.ReportTypes) == 0 {
		return nil, fmt.Errorf("portal configuration: no report_types")
	}
	seen := map[string]bool{}
	for _, t := range p.ReportTypes {
		if !typeName.MatchString(t.Name) {
			return nil, fmt.Errorf("portal configuration: bad report type name %q", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("portal configuration: report type %q listed twice", t.Name)
		}
		seen[t.Name] = true
		format, ok := BuilderFormats[t.Builder]
		if !ok || !slices.Contains(Builders, t.Builder) {
			return nil, fmt.Errorf("portal configuration: report type %q: unknown builder %q (known: %v)", t.Name, t.Builder, Builders)
		}
		if t.Format != format {
			return nil, fmt.Errorf("portal configuration: report type %q: builder %q writes format %q, not %q",
				t.Name, t.Builder, format, t.Format)
		}
		if t.MIMEType != "" && !mimeType.MatchString(t.MIMEType) {
			return nil, fmt.Errorf("portal configuration: report type %q: bad content_type %q", t.Name, t.MIMEType)
		}
		if t.Extension != "" && !extension.MatchString(t.Extension) {
			return nil, fmt.Errorf("portal configuration: report type %q: bad extension %q", t.Name, t.Extension)
		}
		if t.BOM && t.Format != "csv" {
			return nil, fmt.Errorf("portal configuration: report type %q: bom applies to csv only", t.Name)
		}
	}
	return &p, nil
}

// ReportType returns the type with that name.
func (p *Portal) ReportType(name string) (ReportType, bool) {
	for _, t := range p.ReportTypes {
		if t.Name == name {
			return t, true
		}
	}
	return ReportType{}, false
}

// TypeNames returns the names of the report types, sorted.
func (p *Portal) TypeNames() []string {
	out := make([]string, 0, len(p.ReportTypes))
	for _, t := range p.ReportTypes {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// Retention is how long a ready report's file is kept.
func (p *Portal) Retention() time.Duration {
	return time.Duration(p.RetentionDays) * 24 * time.Hour
}
