package db

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// ID prefixes. Ids are time-ordered ULIDs in lower case behind a prefix:
// sortable by creation, unguessable, never a counter.
const (
	PrefixOrganization = "org_"
	PrefixApplication  = "app_"
	PrefixUser         = "usr_"
	PrefixSession      = "ses_"
	PrefixCase         = "case_"
	PrefixReport       = "rpt_"
	// PrefixRun names one run of a report's job: its file's key holds it.
	PrefixRun = "run_"
)

// NewID returns a fresh id with the given prefix, such as "rpt_01j…".
func NewID(prefix string) string {
	id := ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader)
	return prefix + strings.ToLower(id.String())
}

// ValidID reports whether s looks like an id with prefix. It is cheap and
// lets handlers answer 404 without a query for garbage ids.
func ValidID(prefix, s string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) != len(prefix)+26 {
		return false
	}
	for _, c := range s[len(prefix):] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
