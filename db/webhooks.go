package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PrefixWebhookEndpoint and PrefixWebhookMessage name webhook endpoints and
// deliveries; a delivery's id is its webhook-id header (Standard Webhooks
// examples use msg_). Deliveries get their ids in SQL (tally_new_id), in
// the shape NewID gives.
const (
	PrefixWebhookEndpoint = "wh_"
	PrefixWebhookMessage  = "msg_"
)

// Webhook event types: a report became ready, or failed.
const (
	EventTypeReportReady  = "report.ready"
	EventTypeReportFailed = "report.failed"
)

// Webhook delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
	DeliveryCanceled  = "canceled"
)

// WebhookEndpoint is an application's registered receiver. Its secrets are
// sealed (webhook.Sealer); the key ids name the master key each was sealed
// under.
type WebhookEndpoint struct {
	ID                   string     `db:"id"`
	OrgID                string     `db:"org_id"`
	ApplicationID        string     `db:"application_id"`
	URL                  string     `db:"url"`
	Events               []string   `db:"events"`
	SecretKeyID          string     `db:"secret_key_id"`
	SecretSealed         []byte     `db:"secret_sealed"`
	PreviousSecretKeyID  *string    `db:"previous_secret_key_id"`
	PreviousSecretSealed []byte     `db:"previous_secret_sealed"`
	PreviousSecretUntil  *time.Time `db:"previous_secret_until"`
	DisabledAt           *time.Time `db:"disabled_at"`
	CreatedAt            time.Time  `db:"created_at"`
	UpdatedAt            time.Time  `db:"updated_at"`
}

// GetApplication returns an application by id, or ErrNotFound.
func GetApplication(ctx context.Context, q DBTX, id string) (*Application, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM applications WHERE id = $1`, id)
	app, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Application])
	if err != nil {
		return nil, translate(err)
	}
	return app, nil
}

// ListApplicationsByForeignID returns every organization's application with
// that route segment (tallyctl resolves a bare foreign id with it).
func ListApplicationsByForeignID(ctx context.Context, q DBTX, foreignID string) ([]Application, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM applications WHERE foreign_id = $1 ORDER BY org_id`, foreignID)
	apps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Application])
	if err != nil {
		return nil, fmt.Errorf("listing applications: %w", translate(err))
	}
	return apps, nil
}

// CreateWebhookEndpointParams are the fields of a new endpoint. ID must be
// set: the secret is sealed with it as associated data before the insert.
type CreateWebhookEndpointParams struct {
	ID            string
	OrgID         string
	ApplicationID string
	URL           string
	Events        []string
	SecretKeyID   string
	SecretSealed  []byte
}

// CreateWebhookEndpoint inserts an enabled endpoint.
func CreateWebhookEndpoint(ctx context.Context, q DBTX, p CreateWebhookEndpointParams) (*WebhookEndpoint, error) {
	rows, _ := q.Query(ctx, `
		INSERT INTO webhook_endpoints (id, org_id, application_id, url, events, secret_key_id, secret_sealed)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
		p.ID, p.OrgID, p.ApplicationID, p.URL, p.Events, p.SecretKeyID, p.SecretSealed)
	ep, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[WebhookEndpoint])
	if err != nil {
		return nil, fmt.Errorf("inserting webhook endpoint: %w", translate(err))
	}
	return ep, nil
}

// GetWebhookEndpoint returns an endpoint by id, or ErrNotFound.
func GetWebhookEndpoint(ctx context.Context, q DBTX, id string) (*WebhookEndpoint, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM webhook_endpoints WHERE id = $1`, id)
	ep, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[WebhookEndpoint])
	if err != nil {
		return nil, translate(err)
	}
	return ep, nil
}

// ListWebhookEndpoints returns an application's endpoints, oldest first.
func ListWebhookEndpoints(ctx context.Context, q DBTX, applicationID string) ([]WebhookEndpoint, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM webhook_endpoints WHERE application_id = $1 ORDER BY created_at, id`, applicationID)
	eps, err := pgx.CollectRows(rows, pgx.RowToStructByName[WebhookEndpoint])
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", translate(err))
	}
	return eps, nil
}

// DisableWebhookEndpoint disables an endpoint (a no-op when it already is)
// and returns it, or ErrNotFound. Its pending deliveries are canceled by
// the worker when their turn comes.
func DisableWebhookEndpoint(ctx context.Context, q DBTX, id string) (*WebhookEndpoint, error) {
	rows, _ := q.Query(ctx, `
		UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, now()), updated_at = now()
		 WHERE id = $1 RETURNING *`, id)
	ep, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[WebhookEndpoint])
	if err != nil {
		return nil, translate(err)
	}
	return ep, nil
}

// RotateWebhookSecretParams replace an endpoint's secret. The current one
// becomes the previous one, which keeps signing until PreviousUntil.
type RotateWebhookSecretParams struct {
	ID            string
	SecretKeyID   string
	SecretSealed  []byte
	PreviousUntil time.Time
}

// RotateWebhookSecret replaces an endpoint's secret and returns the
// endpoint, or ErrNotFound. A secret rotated out before is forgotten.
func RotateWebhookSecret(ctx context.Context, q DBTX, p RotateWebhookSecretParams) (*WebhookEndpoint, error) {
	rows, _ := q.Query(ctx, `
		UPDATE webhook_endpoints
		   SET previous_secret_key_id = secret_key_id, previous_secret_sealed = secret_sealed,
		       previous_secret_until = $4, secret_key_id = $2, secret_sealed = $3, updated_at = now()
		 WHERE id = $1 RETURNING *`, p.ID, p.SecretKeyID, p.SecretSealed, p.PreviousUntil)
	ep, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[WebhookEndpoint])
	if err != nil {
		return nil, translate(err)
	}
	return ep, nil
}

// WebhookDelivery is one event for one endpoint.
type WebhookDelivery struct {
	ID            string     `db:"id"`
	EndpointID    string     `db:"endpoint_id"`
	OrgID         string     `db:"org_id"`
	ApplicationID string     `db:"application_id"`
	ReportID      string     `db:"report_id"`
	EventType     string     `db:"event_type"`
	OccurredAt    time.Time  `db:"occurred_at"`
	Status        string     `db:"status"`
	Payload       []byte     `db:"payload"`
	JobID         *int64     `db:"job_id"`
	Attempts      int        `db:"attempts"`
	CreatedAt     time.Time  `db:"created_at"`
	UpdatedAt     time.Time  `db:"updated_at"`
	FinishedAt    *time.Time `db:"finished_at"`
}

// GetWebhookDelivery returns a delivery by id, or ErrNotFound.
func GetWebhookDelivery(ctx context.Context, q DBTX, id string) (*WebhookDelivery, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM webhook_deliveries WHERE id = $1`, id)
	d, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[WebhookDelivery])
	if err != nil {
		return nil, translate(err)
	}
	return d, nil
}

// FixWebhookPayload stores a delivery's body unless one is stored already,
// and returns the stored one: every attempt sends the first attempt's bytes.
func FixWebhookPayload(ctx context.Context, q DBTX, id string, payload []byte) ([]byte, error) {
	var stored []byte
	err := q.QueryRow(ctx, `
		UPDATE webhook_deliveries SET payload = coalesce(payload, $2), updated_at = now()
		 WHERE id = $1 RETURNING payload`, id, payload).Scan(&stored)
	if err != nil {
		return nil, fmt.Errorf("storing webhook payload: %w", translate(err))
	}
	return stored, nil
}

// WebhookAttempt is one HTTP attempt of a delivery. StatusCode is nil when
// no answer came.
type WebhookAttempt struct {
	ID         int64     `db:"id"`
	DeliveryID string    `db:"delivery_id"`
	Attempt    int       `db:"attempt"`
	JobID      *int64    `db:"job_id"`
	StartedAt  time.Time `db:"started_at"`
	LatencyUS  int64     `db:"latency_us"`
	StatusCode *int      `db:"status_code"`
	Succeeded  bool      `db:"succeeded"`
	Error      *string   `db:"error"`
}

// RecordWebhookAttemptParams are an attempt and the delivery's status after
// it: DeliveryPending to retry, or a final status.
type RecordWebhookAttemptParams struct {
	DeliveryID string
	Attempt    int
	JobID      int64
	StartedAt  time.Time
	Latency    time.Duration
	StatusCode int // zero: no answer
	Succeeded  bool
	Error      string
	Status     string
}

// RecordWebhookAttempt inserts an attempt and moves its delivery to
// p.Status, if the delivery is still pending. It reports whether it was:
// false means another run finished it first, and nothing was written.
func RecordWebhookAttempt(ctx context.Context, q DBTX, p RecordWebhookAttemptParams) (bool, error) {
	var code *int
	if p.StatusCode != 0 {
		code = &p.StatusCode
	}
	var errText *string
	if p.Error != "" {
		e := p.Error
		if len(e) > 1000 {
			e = e[:1000]
		}
		errText = &e
	}
	tag, err := q.Exec(ctx, `
		WITH d AS (
			UPDATE webhook_deliveries
			   SET attempts = attempts + 1, status = $9, updated_at = now(),
			       finished_at = CASE WHEN $9 = 'pending' THEN NULL ELSE now() END
			 WHERE id = $1 AND status = 'pending'
			RETURNING id)
		INSERT INTO webhook_attempts (delivery_id, attempt, job_id, started_at, latency_us, status_code, succeeded, error)
		SELECT id, $2, nullif($3, 0), $4, $5, $6, $7, $8 FROM d`,
		p.DeliveryID, p.Attempt, p.JobID, p.StartedAt, p.Latency.Microseconds(), code, p.Succeeded, errText, p.Status)
	if err != nil {
		return false, fmt.Errorf("recording webhook attempt: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// FinishWebhookDelivery moves a pending delivery to a final status without
// an attempt (a disabled endpoint: canceled) and reports whether it was
// pending.
func FinishWebhookDelivery(ctx context.Context, q DBTX, id, status string) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE webhook_deliveries SET status = $2, finished_at = now(), updated_at = now()
		 WHERE id = $1 AND status = 'pending'`, id, status)
	if err != nil {
		return false, fmt.Errorf("finishing webhook delivery: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// WebhookDeliveryLog is a delivery with its endpoint's URL and its attempts.
type WebhookDeliveryLog struct {
	WebhookDelivery
	URL        string
	AttemptLog []WebhookAttempt
}

// ListWebhookDeliveries returns an application's newest deliveries (at
// most limit), newest first, each with its attempts in order.
func ListWebhookDeliveries(ctx context.Context, q DBTX, applicationID string, limit int) ([]WebhookDeliveryLog, error) {
	rows, _ := q.Query(ctx, `
		SELECT d.*, e.url FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		 WHERE d.application_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2`, applicationID, limit)
	type row struct {
		WebhookDelivery
		URL string `db:"url"`
	}
	ds, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		return nil, fmt.Errorf("listing webhook deliveries: %w", translate(err))
	}
	out := make([]WebhookDeliveryLog, len(ds))
	ids := make([]string, len(ds))
	index := make(map[string]int, len(ds))
	for i, d := range ds {
		out[i] = WebhookDeliveryLog{WebhookDelivery: d.WebhookDelivery, URL: d.URL}
		ids[i] = d.ID
		index[d.ID] = i
	}
	rows, _ = q.Query(ctx, `SELECT * FROM webhook_attempts WHERE delivery_id = ANY ($1) ORDER BY id`, ids)
	as, err := pgx.CollectRows(rows, pgx.RowToStructByName[WebhookAttempt])
	if err != nil {
		return nil, fmt.Errorf("listing webhook attempts: %w", translate(err))
	}
	for _, a := range as {
		i := index[a.DeliveryID]
		out[i].AttemptLog = append(out[i].AttemptLog, a)
	}
	return out, nil
}
