package api

import (
	"testing"
	"time"
)

func TestPreferWait(t *testing.T) {
	t.Parallel()
	const limit = 30 * time.Second
	tests := []struct {
		name    string
		headers []string
		wait    time.Duration
		ok      bool
	}{
		{"None", nil, 0, false},
		{"Other", []string{"respond-async"}, 0, false},
		{"Plain", []string{"wait=10"}, 10 * time.Second, true},
		{"Zero", []string{"wait=0"}, 0, true},
		{"Clamped", []string{"wait=31"}, limit, true},
		{"HugeClamped", []string{"wait=99999999999999999999999999"}, limit, true},
		{"CaseInsensitive", []string{"WAIT=5"}, 5 * time.Second, true},
		{"Quoted", []string{`wait="7"`}, 7 * time.Second, true},
		{"AmongOthers", []string{`respond-async, wait=3; foo="a,b", return=minimal`}, 3 * time.Second, true},
		{"Spaces", []string{" wait = 4 "}, 4 * time.Second, true},
		{"SecondHeader", []string{"return=minimal", "wait=2"}, 2 * time.Second, true},
		{"FirstWins", []string{"wait=2, wait=9"}, 2 * time.Second, true},
		{"QuotedCommaBefore", []string{`foo="x, wait=9", wait=1`}, time.Second, true},
		{"Negative", []string{"wait=-1"}, 0, false},
		{"Fraction", []string{"wait=1.5"}, 0, false},
		{"Word", []string{"wait=soon"}, 0, false},
		{"Empty", []string{"wait="}, 0, false},
		{"NoValue", []string{"wait"}, 0, false},
		{"Prefix", []string{"waiting=5"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, ok := preferWait(tt.headers, limit)
			if wait != tt.wait || ok != tt.ok {
				t.Fatalf("preferWait(%q) = %s, %v; want %s, %v", tt.headers, wait, ok, tt.wait, tt.ok)
			}
		})
	}
}
