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

// ReportType is one kind of report the portal offers.
type ReportType struct {
	Name        string `yaml:"name"`
	Builder     string `yaml:"builder"`
	Format      string `yaml:"format"`
	Description string `yaml:"description"`
}

// ContentType returns the MIME type of the type's files.
func (t ReportType) ContentType() string {
	switch t.Format {
	case "csv":
		return "text/csv; charset=utf-8"
	}
	return "application/octet-stream"
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
	BuilderTransactionSummary = "transaction_summary"
	BuilderActivityLog        = "activity_log"
)

// Builders are the report builders the worker implements, the one list that
// portal configurations are checked against.
var Builders = []string{BuilderTransactionSummary, BuilderActivityLog}

var typeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

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
		if !slices.Contains(Builders, t.Builder) {
			return nil, fmt.Errorf("portal configuration: report type %q: unknown builder %q (known: %v)", t.Name, t.Builder, Builders)
		}
		if t.Format != "csv" {
			return nil, fmt.Errorf("portal configuration: report type %q: unsupported format %q", t.Name, t.Format)
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
