package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
)

// TestInlineArgsSnapshot: the scope's snapshot argument ($6, a *string) is
// inlined as NULL when absent and as a quoted literal when present.
func TestInlineArgsSnapshot(t *testing.T) {
	q := db.ScopeParams{ApplicationID: "app_1", PeriodStart: time.Unix(0, 0), PeriodEnd: time.Unix(1, 0), DataAsOf: time.Unix(2, 0)}
	got, err := inlineArgs("$6::pg_snapshot", q.ScopeArgs())
	if err != nil || got != "NULL::pg_snapshot" {
		t.Fatalf("no snapshot: %q, %v", got, err)
	}
	q.Snapshot = "10:12:11"
	got, err = inlineArgs("$6::pg_snapshot", q.ScopeArgs())
	if err != nil || got != "'10:12:11'::pg_snapshot" {
		t.Fatalf("snapshot: %q, %v", got, err)
	}
}

// TestEarlierRuns: a new file keeps the previous run's table under its date,
// above the runs that file had already kept.
func TestEarlierRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	old := "# Benchmarks\n\nintro\n\n- Date: 2026-11-30 10:00 UTC\n- Machine: m\n\n| a |\n|---|\n| 2 |\n\n## How each row is measured\n\n1. x\n\n" +
		earlierHeading + "\n### 2026-11-28 15:31 UTC\n\n- Date: 2026-11-28 15:31 UTC\n\n| a |\n|---|\n| 1 |\n\n" + keptMarker + "\n\nhand\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	got := earlierRuns(path)
	i30 := strings.Index(got, "### 2026-11-30 10:00 UTC\n\n- Date: 2026-11-30 10:00 UTC\n- Machine: m\n\n| a |\n|---|\n| 2 |\n")
	i28 := strings.Index(got, "### 2026-11-28 15:31 UTC")
	if !strings.HasPrefix(got, earlierHeading) || i30 < 0 || i28 < i30 || strings.Contains(got, "How each row") || strings.Contains(got, keptMarker) {
		t.Fatalf("earlierRuns:\n%s", got)
	}
	if strings.Count(got, earlierHeading) != 1 {
		t.Fatalf("heading repeated:\n%s", got)
	}
}
