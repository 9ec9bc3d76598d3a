package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// apiClient calls the API as the portal does, as the bench auditor.
type apiClient struct {
	base  string
	token string
	http  *http.Client

	mu    sync.Mutex
	etags map[string]string // list URL → ETag of the last 200
	last  map[string][]listedReport
}

type listedReport struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newAPIClient(base, token string) *apiClient {
	return &apiClient{
		base:  base,
		token: token,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute, DisableCompression: true,
		}},
		etags: map[string]string{},
		last:  map[string][]listedReport{},
	}
}

func (c *apiClient) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	return c.http.Do(req)
}

// statusError reads a response that did not have the expected status.
func statusError(resp *http.Response, want int) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s %s: HTTP %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, bytes.TrimSpace(body))
}

// create POSTs a transaction_summary report for a case and returns its id.
func (c *apiClient) create(ctx context.Context, foreignID, caseID string) (string, error) {
	return c.createType(ctx, foreignID, caseID, "transaction_summary")
}

// createType POSTs a report of the given type for a case and returns its id.
func (c *apiClient) createType(ctx context.Context, foreignID, caseID, typ string) (string, error) {
	body := `{"case_id":"` + caseID + `","report_type":"` + typ + `"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/applications/"+url.PathEscape(foreignID)+"/case-reports", bytes.NewReader([]byte(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", statusError(resp, http.StatusAccepted)
	}
	var r listedReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", fmt.Errorf("decoding created report: %w", err)
	}
	return r.ID, nil
}

func (c *apiClient) listURL(foreignID string, limit int) string {
	return fmt.Sprintf("%s/api/applications/%s/reports?limit=%d", c.base, url.PathEscape(foreignID), limit)
}

// list GETs the report list with If-None-Match, as a polling portal does,
// and returns the current list (from the last 200 when the answer is 304).
func (c *apiClient) list(ctx context.Context, foreignID string, limit int) ([]listedReport, error) {
	u := c.listURL(foreignID, limit)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	etag := c.etags[u]
	c.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		_, _ = io.Copy(io.Discard, resp.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last[u], nil
	case http.StatusOK:
		var rs []listedReport
		if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil {
			return nil, fmt.Errorf("decoding report list: %w", err)
		}
		c.mu.Lock()
		c.etags[u], c.last[u] = resp.Header.Get("ETag"), rs
		c.mu.Unlock()
		return rs, nil
	}
	return nil, statusError(resp, http.StatusOK)
}

// etag GETs the list once and returns its ETag.
func (c *apiClient) etag(ctx context.Context, foreignID string, limit int) (string, error) {
	if _, err := c.list(ctx, foreignID, limit); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.etags[c.listURL(foreignID, limit)], nil
}

// listNotModified GETs the list with a known ETag and expects 304.
func (c *apiClient) listNotModified(ctx context.Context, foreignID string, limit int, etag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.listURL(foreignID, limit), nil)
	if err != nil {
		return err
	}
	req.Header.Set("If-None-Match", etag)
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNotModified {
		return statusError(resp, http.StatusNotModified)
	}
	return nil
}

// waitReady polls the list every interval until the report is ready.
func (c *apiClient) waitReady(ctx context.Context, foreignID, reportID string, interval, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rs, err := c.list(ctx, foreignID, 10)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.ID != reportID {
				continue
			}
			switch r.Status {
			case "ready":
				return nil
			case "failed", "canceled", "expired":
				msg := ""
				if r.Error != nil {
					msg = r.Error.Code + ": " + r.Error.Message
				}
				return fmt.Errorf("report %s is %s: %s", reportID, r.Status, msg)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("report %s not ready after %s", reportID, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// download GETs a report's file and returns its size.
func (c *apiClient) download(ctx context.Context, foreignID, reportID string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.base+"/api/applications/"+url.PathEscape(foreignID)+"/reports/"+url.PathEscape(reportID)+"/download", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(resp, http.StatusOK)
	}
	n, err := io.CopyBuffer(discard{}, resp.Body, buf)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("download: got %d bytes, Content-Length %d", n, resp.ContentLength)
	}
	return n, err
}

// discard is io.Discard without ReaderFrom, so that io.CopyBuffer uses the
// given buffer for both sides alike.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
