package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/view"
	"github.com/tally-compliance/tally/webhook"
)

// QueueWebhooks is the queue of webhook deliveries, so that a slow receiver
// never holds a report worker.
const QueueWebhooks = "webhooks"

// WebhookMaxAttempts is the attempt budget of a delivery job. The trigger
// tally_enqueue_webhooks (migration 00011) inserts the jobs with this
// value; the retry window (config.WebhookRetryWindow) normally ends a
// delivery first.
const WebhookMaxAttempts = 25

// Webhook retry backoff: the delay after failed attempt n is
// WebhookRetryBase × 2^(n-1), at most WebhookMaxRetryDelay, ±10 % jitter:
// 30 s, 1 min, 2 min … 2 h 8 min, then every 4 h, about 15 attempts in 24 h.
const (
	WebhookRetryBase     = 30 * time.Second
	WebhookMaxRetryDelay = 4 * time.Hour
)

// Webhook delivery results, as counted by WebhookMetrics.
const (
	WebhookResultSucceeded = "succeeded"
	WebhookResultRetry     = "retry"
	WebhookResultFailed    = "failed"
	WebhookResultCanceled  = "canceled"
)

// DeliverWebhookArgs asks a worker to send one webhook delivery. The
// trigger on reports inserts these jobs, with the args as JSON
// {"delivery_id": …}.
type DeliverWebhookArgs struct {
	DeliveryID string `json:"delivery_id"`
}

// Kind is the job kind; tally_enqueue_webhooks writes it too.
func (DeliverWebhookArgs) Kind() string { return "deliver_webhook" }

// InsertOpts are the per-kind defaults, those of the trigger's rows.
func (DeliverWebhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueWebhooks, MaxAttempts: WebhookMaxAttempts}
}

// WebhookMetrics receives the outcome of each delivery attempt.
type WebhookMetrics interface {
	// WebhookDelivery counts an attempt's result (WebhookResult*).
	WebhookDelivery(result string)
}

// DeliverWebhookWorker sends a delivery to its endpoint, following the
// Standard Webhooks specification: a JSON body {"type", "timestamp",
// "data"} where data is the report object as a caller with reports:list
// (and not reports:download) sees it, and the webhook-id (the delivery's
// id, the same on every attempt), webhook-timestamp (the attempt's) and
// webhook-signature headers.
//
// A 2xx answer succeeds; anything else (another status, a redirect, a
// timeout, a refused address, a connection error) is recorded with its
// status code, latency and error, and retried with exponential backoff
// (NextRetry) for config.WebhookRetryWindow, after which the delivery is
// failed. A 410 Gone fails the delivery at once and disables the endpoint,
// as the specification asks. A delivery that is no longer pending is never sent again, so a
// job run twice (a rescue, a restart) sends nothing more once a 2xx is
// recorded.
type DeliverWebhookWorker struct {
	river.WorkerDefaults[DeliverWebhookArgs]

	Pool *pgxpool.Pool
	// Sealer opens endpoint secrets.
	Sealer *webhook.Sealer
	// Client sends the requests: webhook.NewClient (address guard, no
	// redirects, a timeout).
	Client *http.Client
	// RequestTimeout is the client's timeout; the job's is a minute more.
	RequestTimeout time.Duration
	// RetryBase and MaxRetryDelay shape the backoff; zero means
	// WebhookRetryBase and WebhookMaxRetryDelay. Tests shorten them.
	RetryBase, MaxRetryDelay time.Duration
	// RetryWindow is how long a delivery is retried; zero means
	// config.WebhookRetryWindow.
	RetryWindow time.Duration
	// Logger logs each attempt; nil discards.
	Logger *slog.Logger
	// Metrics, when set, counts attempts by result.
	Metrics WebhookMetrics
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time
}

// Timeout is the job's deadline: the request's and a minute for the
// database.
func (w *DeliverWebhookWorker) Timeout(*river.Job[DeliverWebhookArgs]) time.Duration {
	t := w.RequestTimeout
	if t <= 0 {
		t = config.DefaultWebhookTimeout
	}
	return t + time.Minute
}

// NextRetry schedules the attempt after a failed one: the delay Work
// logged and checked against the retry window.
func (w *DeliverWebhookWorker) NextRetry(job *river.Job[DeliverWebhookArgs]) time.Time {
	return w.now().Add(w.retryDelay(job.ID, job.Attempt))
}

// retryDelay is the delay after failed attempt of job, with a jitter drawn
// from the job id and attempt, so that Work and NextRetry agree on it.
func (w *DeliverWebhookWorker) retryDelay(jobID int64, attempt int) time.Duration {
	base, maxDelay := w.RetryBase, w.MaxRetryDelay
	if base <= 0 {
		base = WebhookRetryBase
	}
	if maxDelay <= 0 {
		maxDelay = WebhookMaxRetryDelay
	}
	h := fnv.New64a()
	_ = binary.Write(h, binary.LittleEndian, [2]int64{jobID, int64(attempt)})
	return WebhookRetryDelay(attempt, base, maxDelay, float64(h.Sum64()>>11)/(1<<53))
}

// WebhookRetryDelay is the delay after failed attempt n (1-based):
// base × 2^(n-1), at most maxDelay, scaled by 0.9 + 0.2 × jitter (jitter in
// [0, 1)).
func WebhookRetryDelay(attempt int, base, maxDelay time.Duration, jitter float64) time.Duration {
	d := maxDelay
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 40 {
		if e := base << (attempt - 1); e > 0 && e < maxDelay {
			d = e
		}
	}
	return time.Duration(float64(d) * (0.9 + 0.2*jitter))
}

func (w *DeliverWebhookWorker) now() time.Time {
	if w.NowFunc != nil {
		return w.NowFunc()
	}
	return time.Now()
}

func (w *DeliverWebhookWorker) window() time.Duration {
	if w.RetryWindow > 0 {
		return w.RetryWindow
	}
	return config.WebhookRetryWindow
}

func (w *DeliverWebhookWorker) count(result string) {
	if w.Metrics != nil {
		w.Metrics.WebhookDelivery(result)
	}
}

// Work makes one attempt of a delivery.
func (w *DeliverWebhookWorker) Work(ctx context.Context, job *river.Job[DeliverWebhookArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("webhook_id", job.Args.DeliveryID), slog.Int64("job_id", job.ID),
		slog.Int("attempt", job.Attempt))

	d, err := db.GetWebhookDelivery(ctx, w.Pool, job.Args.DeliveryID)
	if errors.Is(err, db.ErrNotFound) {
		logger.WarnContext(ctx, "webhook delivery does not exist (its report or endpoint was deleted); cancelling its job")
		return river.JobCancel(fmt.Errorf("webhook delivery %s does not exist", job.Args.DeliveryID))
	}
	if err != nil {
		return err
	}
	logger = logger.With(slog.String("event_type", d.EventType), slog.String("report_id", d.ReportID),
		slog.String("endpoint_id", d.EndpointID))
	if d.Status != db.DeliveryPending {
		logger.InfoContext(ctx, "webhook delivery already finished; not sending it again", slog.String("status", d.Status))
		return nil
	}
	ep, err := db.GetWebhookEndpoint(ctx, w.Pool, d.EndpointID)
	if err != nil {
		return fmt.Errorf("loading webhook endpoint: %w", err)
	}
	if ep.DisabledAt != nil {
		if _, err := db.FinishWebhookDelivery(ctx, w.Pool, d.ID, db.DeliveryCanceled); err != nil {
			return err
		}
		w.count(WebhookResultCanceled)
		logger.InfoContext(ctx, "webhook endpoint disabled; delivery canceled")
		return nil
	}
	body := d.Payload
	if body == nil {
		if body, err = w.payload(ctx, d); err != nil {
			return err
		}
	}
	secrets, err := w.secrets(ep)
	if err != nil {
		// A secret that does not open (its master key was dropped) will not
		// open on a retry either.
		logger.ErrorContext(ctx, "opening the endpoint's secret; cancelling the delivery", slog.String("error", err.Error()))
		if _, ferr := db.FinishWebhookDelivery(ctx, w.Pool, d.ID, db.DeliveryFailed); ferr != nil {
			return ferr
		}
		w.count(WebhookResultFailed)
		return river.JobCancel(err)
	}

	started := w.now()
	code, sendErr := w.send(ctx, ep.URL, d.ID, started, body, secrets)
	latency := w.now().Sub(started)
	if sendErr != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The worker is stopping: River makes the job available again
		// without counting the attempt, and another worker sends it.
		logger.InfoContext(ctx, "webhook attempt interrupted by shutdown")
		return ctx.Err()
	}
	ok := sendErr == nil && code >= 200 && code <= 299
	if sendErr == nil && !ok {
		sendErr = fmt.Errorf("receiver answered %d", code)
		if code >= 300 && code <= 399 {
			sendErr = fmt.Errorf("receiver answered %d (redirects are not followed: update the endpoint's URL)", code)
		}
	}
	status := db.DeliverySucceeded
	next := time.Duration(0)
	gone := code == http.StatusGone
	if !ok {
		next = w.retryDelay(job.ID, job.Attempt)
		status = db.DeliveryPending
		if gone || job.Attempt >= job.MaxAttempts || w.now().Add(next).After(d.CreatedAt.Add(w.window())) {
			status = db.DeliveryFailed
		}
	}
	p := db.RecordWebhookAttemptParams{
		DeliveryID: d.ID, Attempt: job.Attempt, JobID: job.ID, StartedAt: started, Latency: latency,
		StatusCode: code, Succeeded: ok, Status: status,
	}
	if sendErr != nil {
		p.Error = sendErr.Error()
	}
	recorded, err := db.RecordWebhookAttempt(context.WithoutCancel(ctx), w.Pool, p)
	if err != nil {
		return err
	}
	if !recorded {
		logger.InfoContext(ctx, "webhook delivery was finished by another run")
		return nil
	}
	attrs := []any{slog.String("url", ep.URL), slog.Int("status_code", code), slog.Duration("latency", latency)}
	switch status {
	case db.DeliverySucceeded:
		w.count(WebhookResultSucceeded)
		logger.InfoContext(ctx, "webhook delivered", attrs...)
		return nil
	case db.DeliveryFailed:
		w.count(WebhookResultFailed)
		if gone {
			// 410 Gone: the receiver wants no more webhooks (Standard
			// Webhooks asks senders to disable the endpoint).
			if _, err := db.DisableWebhookEndpoint(context.WithoutCancel(ctx), w.Pool, ep.ID); err != nil {
				return err
			}
			logger.WarnContext(ctx, "receiver answered 410 Gone; endpoint disabled", attrs...)
			return river.JobCancel(loggedError{fmt.Errorf("webhook %s: %w", d.ID, sendErr)})
		}
		logger.WarnContext(ctx, "webhook delivery failed; giving up", append(attrs, slog.String("error", p.Error))...)
		return river.JobCancel(loggedError{fmt.Errorf("webhook %s: %w", d.ID, sendErr)})
	default:
		w.count(WebhookResultRetry)
		logger.WarnContext(ctx, "webhook attempt failed; will retry",
			append(attrs, slog.String("error", p.Error), slog.Duration("retry_in", next.Round(time.Millisecond)))...)
		return loggedError{fmt.Errorf("webhook %s: %w", d.ID, sendErr)}
	}
}

// webhookEnvelope is the body of a delivery.
type webhookEnvelope struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      view.Report `json:"data"`
}

// WebhookPayload is the body of a webhook: {"type", "timestamp", "data"},
// data being the report as a caller with reports:list and without
// reports:download sees it (view.ReportFor without content).
func WebhookPayload(eventType string, occurredAt time.Time, rep *db.Report) ([]byte, error) {
	body, err := json.Marshal(webhookEnvelope{Type: eventType, Timestamp: occurredAt.UTC(), Data: view.ReportFor(rep, false)})
	if err != nil {
		return nil, fmt.Errorf("encoding webhook payload: %w", err)
	}
	return body, nil
}

// payload builds a delivery's body from its report as it is now and
// stores it, unless an earlier run stored one first; it returns the stored
// body.
func (w *DeliverWebhookWorker) payload(ctx context.Context, d *db.WebhookDelivery) ([]byte, error) {
	rep, err := db.GetReportByID(ctx, w.Pool, d.ReportID)
	if err != nil {
		return nil, fmt.Errorf("loading report %s: %w", d.ReportID, err)
	}
	body, err := WebhookPayload(d.EventType, d.OccurredAt, rep)
	if err != nil {
		return nil, err
	}
	return db.FixWebhookPayload(ctx, w.Pool, d.ID, body)
}

// secrets opens the endpoint's current secret and, during its grace
// period, the previous one.
func (w *DeliverWebhookWorker) secrets(ep *db.WebhookEndpoint) ([][]byte, error) {
	if w.Sealer == nil {
		return nil, errors.New("no webhook sealer configured")
	}
	cur, err := w.Sealer.Open(ep.SecretKeyID, ep.ID, ep.SecretSealed)
	if err != nil {
		return nil, err
	}
	secrets := [][]byte{cur}
	if ep.PreviousSecretSealed != nil && ep.PreviousSecretUntil != nil && w.now().Before(*ep.PreviousSecretUntil) {
		prev, err := w.Sealer.Open(*ep.PreviousSecretKeyID, ep.ID, ep.PreviousSecretSealed)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, prev)
	}
	return secrets, nil
}

// send posts body and returns the answer's status code (zero when none
// came). It reads at most webhook.MaxResponseBody bytes of the answer.
func (w *DeliverWebhookWorker) send(ctx context.Context, url, id string, ts time.Time, body []byte, secrets [][]byte) (int, error) {
	headers, err := webhook.Headers(id, ts, body, secrets...)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("building request: %w", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tally-Webhooks/1")
	resp, err := w.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, webhook.MaxResponseBody))
	return resp.StatusCode, nil
}
