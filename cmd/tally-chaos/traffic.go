package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiCall is one HTTP request the run made to the API, as the portal would.
type apiCall struct {
	op         string // create, list, download, outage_download, check_download
	start, end time.Time
	status     int    // 0: no HTTP answer
	code       string // error.code of a JSON error body
	jsonError  bool   // the body was the API's JSON error shape
	retryAfter string
	err        string
	body       string // start of the body of an unexpected answer
}

// errorBody is the API's JSON error shape.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// apiClient talks to the API as one user and records every call.
type apiClient struct {
	base      string
	foreignID string
	token     string
	http      *http.Client

	mu    sync.Mutex
	calls []apiCall
}

func (a *apiClient) record(c apiCall) {
	a.mu.Lock()
	a.calls = append(a.calls, c)
	a.mu.Unlock()
}

func (a *apiClient) snapshot() []apiCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]apiCall(nil), a.calls...)
}

// do sends one request and records it. For 2xx answers the body is passed to
// keep (which may be nil); other bodies are decoded as the JSON error.
func (a *apiClient) do(ctx context.Context, op, method, path string, body []byte, header http.Header,
	keep func(io.Reader) error,
) apiCall {
	c := apiCall{op: op, start: time.Now()}
	defer func() {
		c.end = time.Now()
		a.record(c)
	}()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		c.err = err.Error()
		return c
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		c.err = err.Error()
		return c
	}
	defer resp.Body.Close()
	c.status = resp.StatusCode
	c.retryAfter = resp.Header.Get("Retry-After")
	if resp.StatusCode/100 == 2 {
		if keep != nil {
			if err := keep(resp.Body); err != nil {
				c.err = err.Error()
			}
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		return c
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb errorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" &&
		strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		c.jsonError, c.code = true, eb.Error.Code
	}
	if !c.jsonError || resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
		c.body = string(data[:min(len(data), 300)])
	}
	return c
}

// reportSpec is one report to create.
type reportSpec struct {
	kind   string // what the mix calls it: huge, medium, ...
	caseID string
	typ    string
}

// createReport creates the report of spec until the API accepts it, with
// one Idempotency-Key across attempts so that a retried request never makes
// a second report. Busy and unavailable answers (429, 503, no answer) are
// retried after their Retry-After; it gives up on ctx or an answer that
// retrying cannot change.
func (a *apiClient) createReport(ctx context.Context, key string, spec reportSpec) (string, error) {
	body, _ := json.Marshal(map[string]string{"case_id": spec.caseID, "report_type": spec.typ})
	header := http.Header{"Idempotency-Key": {key}}
	for attempt := 1; ; attempt++ {
		var created struct {
			ID string `json:"id"`
		}
		c := a.do(ctx, "create", http.MethodPost, "/api/applications/"+a.foreignID+"/case-reports", body, header,
			func(r io.Reader) error { return json.NewDecoder(r).Decode(&created) })
		switch {
		case c.status == http.StatusAccepted && c.err == "":
			return created.ID, nil
		case c.status == 0, c.status == http.StatusTooManyRequests, c.status == http.StatusConflict,
			c.status >= 500: // a 500 is recorded as a failure, and retried so that the report is not lost
		default:
			return "", fmt.Errorf("POST case-reports: %d %s %s", c.status, c.code, c.body)
		}
		wait := time.Second
		if s, err := strconv.Atoi(c.retryAfter); err == nil && s > 0 {
			wait = time.Duration(min(s, 5)) * time.Second
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("creating report (%d attempts, last %d %s %s): %w", attempt, c.status, c.code, c.err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// listReports is the portal's poll of the report list.
func (a *apiClient) listReports(ctx context.Context) apiCall {
	return a.do(ctx, "list", http.MethodGet, "/api/applications/"+a.foreignID+"/reports?limit=50", nil, nil, nil)
}

// download fetches a report's file through the API; for a 200 it returns
// the SHA-256 and size of the body.
func (a *apiClient) download(ctx context.Context, op, reportID string) (apiCall, string, int64) {
	h := sha256.New()
	var n int64
	c := a.do(ctx, op, http.MethodGet, "/api/applications/"+a.foreignID+"/reports/"+reportID+"/download", nil, nil,
		func(r io.Reader) error {
			var err error
			n, err = io.Copy(h, r)
			return err
		})
	return c, hex.EncodeToString(h.Sum(nil)), n
}

// mix returns n report specs in a shuffled order, in the proportions of
// weights (kind -> weight).
func mix(n int, kinds []reportSpec, weights []int, rng *rand.Rand) []reportSpec {
	total := 0
	for _, w := range weights {
		total += w
	}
	var out []reportSpec
	for i, k := range kinds {
		count := n * weights[i] / total
		for range count {
			out = append(out, k)
		}
	}
	for i := 0; len(out) < n; i++ {
		out = append(out, kinds[i%len(kinds)])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// runCreates creates every spec, spread evenly over `over`, at most
// `parallel` in flight. It returns the report ids by spec index.
func runCreates(ctx context.Context, a *apiClient, runID string, specs []reportSpec, over time.Duration, parallel int,
	logger *slog.Logger,
) ([]string, []error) {
	ids := make([]string, len(specs))
	errs := make([]error, len(specs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i, spec := range specs {
		at := start.Add(over * time.Duration(i) / time.Duration(len(specs)))
		select {
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		case <-time.After(time.Until(at)):
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ids[i], errs[i] = a.createReport(ctx, fmt.Sprintf("chaos-%s-%d", runID, i), spec)
			if errs[i] != nil {
				logger.ErrorContext(ctx, "report not created", slog.Int("index", i), slog.String("error", errs[i].Error()))
			}
		})
	}
	wg.Wait()
	return ids, errs
}

var errNoReadyReport = errors.New("no ready report yet")
