package api

import (
	"strings"
	"time"
)

// preferWait returns the wait preference of a request's Prefer headers
// (RFC 7240): the first "wait" preference, in whole seconds, clamped to
// limit. ok is false when there is none or when it is malformed (a value
// that is not delta-seconds): RFC 7240 has a server ignore what it does not
// understand rather than refuse the request. Preference names are
// case-insensitive; the value may be a token or a quoted string; parameters
// after ";" are ignored.
func preferWait(headers []string, limit time.Duration) (wait time.Duration, ok bool) {
	for _, h := range headers {
		for _, pref := range splitPreferences(h) {
			name, value, hasValue := strings.Cut(pref, "=")
			name = strings.TrimSpace(name)
			if !strings.EqualFold(name, "wait") {
				continue
			}
			// Only the first instance of a preference counts (RFC 7240 §2).
			if !hasValue {
				return 0, false
			}
			value = strings.TrimSpace(value)
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			if value == "" {
				return 0, false
			}
			secs := 0
			for i := 0; i < len(value); i++ {
				if value[i] < '0' || value[i] > '9' {
					return 0, false
				}
				if secs <= int(limit/time.Second) {
					secs = secs*10 + int(value[i]-'0')
				}
			}
			return min(time.Duration(secs)*time.Second, limit), true
		}
	}
	return 0, false
}

// splitPreferences splits one Prefer header into its preferences, each
// without its parameters, honouring quoted strings.
func splitPreferences(h string) []string {
	var out []string
	var cur strings.Builder
	quoted, params := false, false
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
		params = false
	}
	for i := 0; i < len(h); i++ {
		ch := h[i]
		switch {
		case quoted:
			if ch == '\\' && i+1 < len(h) {
				if !params {
					cur.WriteByte(ch)
					cur.WriteByte(h[i+1])
				}
				i++
				continue
			}
			if ch == '"' {
				quoted = false
			}
		case ch == '"':
			quoted = true
		case ch == ',':
			flush()
			continue
		case ch == ';':
			params = true
		}
		if !params {
			cur.WriteByte(ch)
		}
	}
	flush()
	return out
}
