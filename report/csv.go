package report

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// A hand-written CSV encoder: fields are appended to a reusable []byte row
// buffer, and whole rows go to a bufio.Writer. It produces exactly the bytes
// of encoding/csv with Comma ',' and UseCRLF false (tests check this on
// random input), without encoding/csv's per-row []string and per-field
// writes. Text fields also get the spreadsheet formula guard.

// appendField appends one CSV field to dst, quoted as encoding/csv quotes it
// (RFC 4180): a field is quoted when it contains a comma, a double quote, CR
// or LF, when it begins with a space character, or when it is `\.`; inside
// quotes a double quote is doubled. It does not append a separator.
func appendField(dst []byte, s string) []byte {
	if !fieldNeedsQuotes(s) {
		return append(dst, s...)
	}
	return appendQuoted(dst, "", s)
}

// appendTextField is appendField for free text that a spreadsheet user may
// open: a value beginning with '=', '+', '-', '@', TAB or CR is prefixed with
// a single quote so that it is not taken for a formula (OWASP CSV injection).
// Numbers and timestamps the report writes itself never go through it.
func appendTextField(dst []byte, s string) []byte {
	if !needsFormulaGuard(s) {
		return appendField(dst, s)
	}
	// "'" + s needs quotes exactly when s contains a special character: the
	// guarded value begins with "'", never with a space, and is never `\.`.
	if !containsSpecial(s) {
		dst = append(dst, '\'')
		return append(dst, s...)
	}
	return appendQuoted(dst, "'", s)
}

func needsFormulaGuard(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

func appendQuoted(dst []byte, prefix, s string) []byte {
	dst = append(dst, '"')
	dst = append(dst, prefix...)
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			dst = append(dst, s...)
			break
		}
		dst = append(dst, s[:i+1]...)
		dst = append(dst, '"')
		s = s[i+1:]
	}
	return append(dst, '"')
}

func containsSpecial(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	return false
}

// fieldNeedsQuotes mirrors encoding/csv's rule for Comma ','.
func fieldNeedsQuotes(s string) bool {
	if s == "" {
		return false
	}
	if s == `\.` || containsSpecial(s) {
		return true
	}
	c := s[0]
	if c < utf8.RuneSelf {
		// ASCII fast path of unicode.IsSpace.
		switch c {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			return true
		}
		return false
	}
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// UTF8BOM is the byte-order mark a report type with `bom: true` starts its
// CSV files with: Windows Excel then reads them as UTF-8, not as the
// machine's code page.
const UTF8BOM = "\uFEFF"
