package api

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	good := "tly_" + strings.Repeat("A", 43)
	tests := []struct {
		values []string
		ok     bool
	}{
		{[]string{"Bearer " + good}, true},
		{[]string{"bearer " + good}, true},
		{[]string{"Bearer " + good, "Bearer " + good}, false},
		{[]string{"Basic " + good}, false},
		{[]string{"Bearer"}, false},
		{[]string{"Bearer  " + good}, false},
		{[]string{"Bearer " + good + " x"}, false},
		{[]string{"Bearer abc"}, false},
		{[]string{"Bearer tly_" + strings.Repeat("A", 300)}, false},
		{[]string{"Bearer tly_' OR '1'='1"}, false},
	}
	for _, tt := range tests {
		if _, ok := bearerToken(tt.values); ok != tt.ok {
			t.Errorf("bearerToken(%q) ok = %v, want %v", tt.values, ok, tt.ok)
		}
	}
}
