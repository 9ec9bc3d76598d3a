package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// defaultChromium is where Debian's chromium package puts the browser.
const defaultChromium = "/usr/bin/chromium"

// chromiumPath returns the browser to drive: TALLY_CHROMIUM, or Debian's
// chromium. A missing browser fails the test: a skipped browser test would
// pass CI without testing anything.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := defaultChromium
	if p := os.Getenv("TALLY_CHROMIUM"); p != "" {
		path = p
	}
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("no browser at %s (%v): install Debian's chromium (sudo apt-get install chromium; .ci/run does) "+
			"or set TALLY_CHROMIUM to a Chromium binary", path, err)
	}
	return path
}

// repoRoot walks up from the test's directory to the directory with go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// saveArtifact writes a test artifact under artifacts/browser/ (git-ignored)
// at the repository root and returns its path.
func saveArtifact(t *testing.T, name string, data []byte) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "artifacts", "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// browser is a headless Chromium tab for one test.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab, without deadline

	mu       sync.Mutex
	statuses map[string]int64 // URL -> status of the last response
}

// status returns the status of the last response the tab got for url, or 0.
func (br *browser) status(url string) int64 {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.statuses[url]
}

// newBrowser starts a fresh headless Chromium (own profile, no network
// chatter) and opens a tab. Everything the page logs to its console, and
// every HTTP error it meets, goes to the test log.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	// chromedp reports protocol trouble from its own goroutines, which can
	// outlive the test by a moment: log only while the test runs.
	var logMu sync.Mutex
	testOver := false
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !testOver {
			t.Logf("chromedp: "+format, args...)
		}
	}
	t.Cleanup(func() { // runs last
		logMu.Lock()
		defer logMu.Unlock()
		testOver = true
	})
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logf))

	// Start the browser without a deadline (the first Run binds its life to
	// the context), but not forever.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			cancelTab()
			cancelAlloc()
			t.Fatalf("starting %s: %v", chromiumPath(t), err)
		}
	case <-time.After(30 * time.Second):
		cancelTab()
		cancelAlloc()
		t.Fatalf("starting %s: no answer in 30s", chromiumPath(t))
	}

	br := &browser{t: t, ctx: ctx, statuses: map[string]int64{}}
	var wg sync.WaitGroup
	logCtx, stopLogs := context.WithCancel(ctx)
	console := chromedp.Console(logCtx)
	responses := chromedp.Events(logCtx, network.ResponseReceived)
	failures := chromedp.Events(logCtx, network.LoadingFailed)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			t.Logf("browser console %s: %s", m.Type, m.Text)
		}
	})
	wg.Go(func() {
		for ev, err := range responses {
			if err != nil {
				return
			}
			br.mu.Lock()
			br.statuses[ev.Response.URL] = ev.Response.Status
			br.mu.Unlock()
			if ev.Response.Status >= 400 {
				t.Logf("browser got %d for %s", ev.Response.Status, ev.Response.URL)
			}
		}
	})
	wg.Go(func() {
		for ev, err := range failures {
			if err != nil {
				return
			}
			if !ev.Canceled {
				t.Logf("browser request failed: %s (%s)", ev.ErrorText, ev.Type)
			}
		}
	})
	t.Cleanup(func() {
		stopLogs()
		wg.Wait() // no t.Logf after the test ends
		cancelTab()
		cancelAlloc()
	})
	return br
}

// do runs steps with a deadline.
func (br *browser) do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(br.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// run runs one action with a deadline and returns its value.
func run[T any](br *browser, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(br.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// fail ends the test with what the page showed: its URL, a screenshot and
// its HTML.
func (br *browser) fail(step string, err error) {
	t := br.t
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "_") + "-failure"
	if url, uerr := run(br, 5*time.Second, chromedp.Location()); uerr == nil {
		t.Logf("page at %s", url)
	}
	if png, serr := run(br, 10*time.Second, chromedp.FullScreenshot(100)); serr == nil {
		t.Logf("screenshot of the failure: %s", saveArtifact(t, name+".png", png))
	}
	if html, herr := run(br, 5*time.Second, chromedp.OuterHTML(chromedp.CSS("html"))); herr == nil {
		t.Logf("page HTML (also in %s):\n%s", saveArtifact(t, name+".html", []byte(html)), html)
	} else {
		t.Logf("reading the page HTML: %v", herr)
	}
	t.Fatalf("%s: %v", step, err)
}

// TestBrowserRiverUICancelAndRetry drives River UI in a real headless
// Chromium, as an admin would: it signs in with basic auth, opens the list of
// available jobs, finds the job of a report just created through the API,
// opens its detail page and clicks Cancel, then Retry. The report follows
// (canceled, then pending), and a screenshot of the detail page is saved.
//
// It does not run in parallel with the package's other tests: a browser on a
// busy two-core machine is the slowest thing here.
func TestBrowserRiverUICancelAndRetry(t *testing.T) {
	br := newBrowser(t) // first: without a browser nothing else matters
	b := setupAdmin(t)
	reportID, jobID := b.createReportJob(t)
	srv := httptest.NewServer(b.server)
	t.Cleanup(srv.Close)

	deadline := time.Now().Add(60 * time.Second)
	left := func() time.Duration { return max(time.Until(deadline), time.Second) }

	if err := br.do(left(), chromedp.Func(func(ctx context.Context, tab *chromedp.Target) error {
		_, err := cdp.Call(ctx, tab, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		br.fail("enabling network events", err)
	}

	// Without credentials River UI stays shut: headless Chromium has no
	// login dialog, so it gives up on the Basic challenge.
	resp, err := run(br, left(), chromedp.NavigateResponse(srv.URL+"/admin/riverui/"))
	switch {
	case err != nil && strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS"):
	case err != nil:
		br.fail("opening River UI without credentials", err)
	case resp.Status != http.StatusUnauthorized:
		br.fail("opening River UI without credentials", fmt.Errorf("got %d, want 401", resp.Status))
	}
	waitFor(t, left(), func() error {
		if got := br.status(srv.URL + "/admin/riverui/"); got != http.StatusUnauthorized {
			return fmt.Errorf("River UI without credentials answered the browser %d, want 401", got)
		}
		return nil
	})

	// Log in. Chromium drops credentials in URLs for subresources and
	// fetches, so the tab sends the basic-auth header with every request.
	if err := br.do(left(), chromedp.Func(func(ctx context.Context, tab *chromedp.Target) error {
		_, err := cdp.Call(ctx, tab, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": basicAuthValue(testAdminUser, testAdminPassword)},
		})
		return err
	})); err != nil {
		br.fail("setting the basic-auth header", err)
	}

	// The jobs list, filtered to available jobs (no worker runs here).
	jobLink := chromedp.CSS(fmt.Sprintf(`a[href="/admin/riverui/jobs/%d"]`, jobID))
	if err := br.do(left(),
		chromedp.Navigate(srv.URL+"/admin/riverui/jobs?state=available"),
		chromedp.WaitVisible(jobLink),
	); err != nil {
		br.fail("finding the report's job in the list of available jobs", err)
	}
	if text, err := run(br, left(), chromedp.Text(jobLink)); err != nil || !strings.Contains(text, "generate_report") {
		br.fail("reading the job's link", fmt.Errorf("text %q, err %v; want the kind generate_report", text, err))
	}

	// Its detail page, by clicking the link (client-side navigation).
	cancelButton := chromedp.Search(`//button[normalize-space(.)="Cancel"]`)
	retryButton := chromedp.Search(`//button[normalize-space(.)="Retry"]`)
	if err := br.do(left(),
		chromedp.Click(jobLink),
		chromedp.WaitVisible(chromedp.Search(fmt.Sprintf(`//*[contains(text(), %q)]`, reportID))),
		chromedp.WaitEnabled(cancelButton),
	); err != nil {
		br.fail("opening the job's detail page", err)
	}
	if url, err := run(br, left(), chromedp.Location()); err != nil || !strings.HasSuffix(url, fmt.Sprintf("/admin/riverui/jobs/%d", jobID)) {
		br.fail("checking the detail page's URL", fmt.Errorf("at %q (err %v)", url, err))
	}

	// Cancel: the job is cancelled and, through the trigger, the report.
	if err := br.do(left(),
		chromedp.Click(cancelButton),
		chromedp.WaitVisible(jobState("Cancelled")),
		chromedp.WaitVisible(chromedp.Search(`//*[normalize-space(text())="Job cancelled"]`)), // River UI's toast
		chromedp.Sleep(500*time.Millisecond),                                                  // let the toast finish fading in, for the screenshot
	); err != nil {
		br.fail("cancelling the job", err)
	}
	waitFor(t, left(), func() error {
		if got := b.jobState(t, jobID); got != "cancelled" {
			return fmt.Errorf("job %d is %s, want cancelled", jobID, got)
		}
		if status, code := b.reportStatus(t, reportID); status != "canceled" || code != "canceled" {
			return fmt.Errorf("report %s is %s (%s), want canceled", reportID, status, code)
		}
		return nil
	})

	png, err := run(br, left(), chromedp.FullScreenshot(100))
	if err != nil {
		br.fail("taking the screenshot", err)
	}
	t.Logf("screenshot of the cancelled job's detail page: %s", saveArtifact(t, "riverui-job.png", png))

	// Retry: the job is available again and the report pending.
	if err := br.do(left(),
		chromedp.WaitEnabled(retryButton),
		chromedp.Click(retryButton),
		chromedp.WaitVisible(jobState("Available")),
	); err != nil {
		br.fail("retrying the job", err)
	}
	waitFor(t, left(), func() error {
		if got := b.jobState(t, jobID); got != "available" {
			return fmt.Errorf("job %d is %s, want available", jobID, got)
		}
		if status, _ := b.reportStatus(t, reportID); status != "pending" {
			return fmt.Errorf("report %s is %s, want pending", reportID, status)
		}
		return nil
	})
}

// jobState selects the State field of River UI's job detail page when it
// shows state.
func jobState(state string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//dt[normalize-space(.)="State"]/following-sibling::dd[normalize-space(.)=%q]`, state))
}

// waitFor polls check until it succeeds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserRiverUIRefusesCrossSiteForm is the attack River UI's mount must
// resist: an admin who logged in (the browser caches the basic-auth
// credentials) visits another site, whose page posts a text/plain form to
// River UI's cancel endpoint. The browser attaches the cached credentials to
// that top-level POST, so only the same-origin check stops it.
func TestBrowserRiverUIRefusesCrossSiteForm(t *testing.T) {
	br := newBrowser(t)
	b := setupAdmin(t)
	reportID, jobID := b.createReportJob(t)
	srv := httptest.NewServer(b.server)
	t.Cleanup(srv.Close)
	target := srv.URL + "/admin/riverui/api/jobs/cancel"
	// The form's one field makes the body {"ids":["<id>"],"x":"="}.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="POST" enctype="text/plain" action="%s">`+
			`<input name='{"ids":["%d"],"x":"' value='"}'></form><script>document.getElementById("f").submit()</script>`,
			target, jobID)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site

	deadline := time.Now().Add(60 * time.Second)
	left := func() time.Duration { return max(time.Until(deadline), time.Second) }

	// Log in the way a person does, by answering the Basic challenge (what
	// the login dialog does), so that Chromium caches the credentials.
	loginCtx, endLogin := context.WithTimeout(br.ctx, left())
	paused := chromedp.Events(loginCtx, fetch.RequestPaused)
	challenges := chromedp.Events(loginCtx, fetch.AuthRequired)
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(loginCtx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	})
	wg.Go(func() {
		for ev, err := range challenges {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(loginCtx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{
				RequestID: ev.RequestID,
				AuthChallengeResponse: &fetch.AuthChallengeResponse{
					Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: testAdminUser, Password: testAdminPassword,
				},
			})
		}
	})
	login := func() error {
		if _, err := chromedp.Call(loginCtx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := chromedp.Call(loginCtx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: new(true)}); err != nil {
			return err
		}
		resp, err := chromedp.Run(loginCtx, chromedp.NavigateResponse(srv.URL+"/admin/riverui/"))
		if err != nil {
			return err
		}
		if resp.Status != http.StatusOK {
			return fmt.Errorf("got %d, want 200", resp.Status)
		}
		_, err = chromedp.Call(loginCtx, fetch.Disable, cdp.Empty{})
		return err
	}
	err := login()
	endLogin()
	wg.Wait()
	if err != nil {
		br.fail("logging in to River UI", err)
	}
	// The cached credentials open River UI with no help now.
	resp, err := run(br, left(), chromedp.NavigateResponse(srv.URL+"/admin/riverui/queues"))
	if err != nil || resp.Status != http.StatusOK {
		br.fail("opening River UI with the cached credentials", fmt.Errorf("response %v, err %v; want 200", resp, err))
	}

	if err := br.do(left(), chromedp.Navigate(evilURL)); err != nil {
		br.fail("visiting the other site", err)
	}
	waitFor(t, left(), func() error {
		if got := br.status(target); got == 0 {
			return fmt.Errorf("the other site's form was not answered")
		}
		return nil
	})
	if got := br.status(target); got != http.StatusForbidden {
		t.Errorf("cross-site form POST to %s: got %d, want 403", target, got)
	}
	if got := b.jobState(t, jobID); got != "available" {
		t.Errorf("job after the cross-site form: got %s, want available", got)
	}
	if status, _ := b.reportStatus(t, reportID); status != "pending" {
		t.Errorf("report after the cross-site form: got %s, want pending", status)
	}
}
