package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/webhook"
)

func newWebhookCmd(d *deps) *cobra.Command {
	cmd := groupCmd("webhook", "Manage an application's webhook endpoints and see their deliveries")
	cmd.Long = `Manage the webhook endpoints of an application and see their deliveries.

When a report of the application becomes ready or failed, each enabled
endpoint subscribed to that event (report.ready, report.failed) gets a POST
following the Standard Webhooks specification: a JSON body
{"type", "timestamp", "data": <the report object as the API shows it to a
caller with reports:list>}, and the headers webhook-id (the same on every
attempt of a delivery), webhook-timestamp and webhook-signature
("v1," + base64 HMAC-SHA256 of id.timestamp.body under the endpoint's
secret). A 2xx answer is a success; anything else is retried with
exponential backoff for 24 hours.

Endpoints must be https (http is accepted with TALLY_ENV=development), and
must not resolve to loopback, private, link-local, multicast or unspecified
addresses unless TALLY_WEBHOOK_ALLOW_PRIVATE or TALLY_WEBHOOK_ALLOWED_CIDRS
says so. Secrets are stored sealed under a key derived from
TALLY_PSEUDONYM_KEY, which tallyctl therefore needs like the workers.`
	cmd.AddCommand(newWebhookAddCmd(d), newWebhookListCmd(d), newWebhookDisableCmd(d),
		newWebhookRotateCmd(d), newWebhookDeliveriesCmd(d))
	return cmd
}

// appRef is the --app (and --org) flags of webhook commands.
type appRef struct{ app, org string }

func (r *appRef) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.app, "app", "", "application id (app_…) or foreign id (required)")
	cmd.Flags().StringVar(&r.org, "org", "", "organization id, when several organizations have the foreign id")
	mustRequire(cmd, "app")
}

// resolve returns the application --app names.
func (r *appRef) resolve(ctx context.Context, q db.DBTX) (*db.Application, error) {
	var app *db.Application
	var err error
	switch {
	case db.ValidID(db.PrefixApplication, r.app):
		app, err = db.GetApplication(ctx, q, r.app)
	case r.org == "":
		// A bare foreign id: fine when one organization has it.
		apps, err := db.ListApplicationsByForeignID(ctx, q, r.app)
		if err != nil {
			return nil, fmt.Errorf("looking up application %q: %w", r.app, err)
		}
		switch len(apps) {
		case 0:
			return nil, fmt.Errorf("application %q not found", r.app)
		case 1:
			return &apps[0], nil
		}
		return nil, fmt.Errorf("%d organizations have an application %q: name one with --org, or give the app_… id", len(apps), r.app)
	default:
		if err := checkID("--org", db.PrefixOrganization, r.org); err != nil {
			return nil, err
		}
		app, err = db.GetApplicationByForeignID(ctx, q, r.org, r.app)
	}
	if errors.Is(err, db.ErrNotFound) {
		return nil, fmt.Errorf("application %q not found", r.app)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up application %q: %w", r.app, err)
	}
	return app, nil
}

// webhookEvents are the events an endpoint can subscribe to.
func webhookEvents() []string { return []string{db.EventTypeReportFailed, db.EventTypeReportReady} }

// endpointJSON is an endpoint in --json output; Secret only when just made.
type endpointJSON struct {
	ID                  string     `json:"id"`
	OrgID               string     `json:"org_id"`
	ApplicationID       string     `json:"application_id"`
	URL                 string     `json:"url"`
	Events              []string   `json:"events"`
	Enabled             bool       `json:"enabled"`
	DisabledAt          *time.Time `json:"disabled_at"`
	PreviousSecretUntil *time.Time `json:"previous_secret_until"`
	CreatedAt           time.Time  `json:"created_at"`
	Secret              string     `json:"secret,omitempty"`
}

func toEndpointJSON(ep *db.WebhookEndpoint, secret string) endpointJSON {
	return endpointJSON{
		ID: ep.ID, OrgID: ep.OrgID, ApplicationID: ep.ApplicationID, URL: ep.URL, Events: ep.Events,
		Enabled: ep.DisabledAt == nil, DisabledAt: utcPtr(ep.DisabledAt), PreviousSecretUntil: utcPtr(ep.PreviousSecretUntil),
		CreatedAt: ep.CreatedAt.UTC(), Secret: secret,
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func newWebhookAddCmd(d *deps) *cobra.Command {
	var ref appRef
	var rawURL, events string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "add --app APP [--org ORG] --url URL --events report.ready,report.failed",
		Short: "Register a webhook endpoint and print its secret once",
		Long: `Register a webhook endpoint of an application. Its signing secret (whsec_
followed by the base64 of 32 random bytes) is printed once, alone on stdout
(the endpoint id goes to stderr), and cannot be shown again: only a sealed
copy is stored. With --json, stdout gets the endpoint with its secret.`,
		Example: `  SECRET=$(tallyctl webhook add --org org_01j… --app payments --url https://portal.example/hooks/tally --events report.ready,report.failed)`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			evs, err := parseNames("events", events, "event", webhookEvents())
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				return fmt.Errorf("--events needs at least one of %s", strings.Join(webhookEvents(), ", "))
			}
			u, err := webhook.ValidateURL(rawURL, d.webhookURLPolicy)
			if err != nil {
				return fmt.Errorf("--url: %w", err)
			}
			sealer, err := d.sealer()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			app, err := ref.resolve(ctx, pool)
			if err != nil {
				return err
			}
			secret := webhook.NewSecret()
			id := db.NewID(db.PrefixWebhookEndpoint)
			keyID, sealed, err := sealer.Seal(id, secret)
			if err != nil {
				return fmt.Errorf("sealing the secret: %w", err)
			}
			ep, err := db.CreateWebhookEndpoint(ctx, pool, db.CreateWebhookEndpointParams{
				ID: id, OrgID: app.OrgID, ApplicationID: app.ID, URL: u, Events: evs, SecretKeyID: keyID, SecretSealed: sealed,
			})
			if err != nil {
				return fmt.Errorf("registering webhook endpoint: %w", err)
			}
			if asJSON {
				return d.printJSON(toEndpointJSON(ep, webhook.EncodeSecret(secret)))
			}
			d.println(webhook.EncodeSecret(secret))
			fmt.Fprintf(d.stderr, "endpoint %s of %s (%s) for %s; the secret above is shown only now\n",
				ep.ID, app.ID, app.ForeignID, strings.Join(ep.Events, ","))
			return nil
		},
	}
	ref.flags(cmd)
	cmd.Flags().StringVar(&rawURL, "url", "", "https URL that receives the POSTs (required)")
	cmd.Flags().StringVar(&events, "events", "", "comma-separated events: report.ready, report.failed (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the endpoint and its secret as JSON")
	mustRequire(cmd, "url", "events")
	return cmd
}

func newWebhookListCmd(d *deps) *cobra.Command {
	var ref appRef
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --app APP [--org ORG]",
		Short: "List an application's webhook endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			app, err := ref.resolve(ctx, pool)
			if err != nil {
				return err
			}
			eps, err := db.ListWebhookEndpoints(ctx, pool, app.ID)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]endpointJSON, len(eps))
				for i := range eps {
					out[i] = toEndpointJSON(&eps[i], "")
				}
				return d.printJSON(out)
			}
			w := tabwriter.NewWriter(d.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tEVENTS\tURL\tCREATED")
			for _, ep := range eps {
				state := "enabled"
				if ep.DisabledAt != nil {
					state = "disabled"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", ep.ID, state, strings.Join(ep.Events, ","), ep.URL,
					ep.CreatedAt.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	ref.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the endpoints as JSON")
	return cmd
}

func newWebhookDisableCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "disable ENDPOINT_ID",
		Short: "Disable a webhook endpoint: no new deliveries, pending ones are canceled",
		Long: `Disable a webhook endpoint. Reports that become ready or failed afterwards
create no delivery for it, and its deliveries still pending (waiting for a
retry) are canceled when their turn comes, without a request. Disabling twice
is a no-op.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID("endpoint", db.PrefixWebhookEndpoint, args[0]); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			ep, err := db.DisableWebhookEndpoint(ctx, pool, args[0])
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("webhook endpoint %s not found", args[0])
			}
			if err != nil {
				return fmt.Errorf("disabling webhook endpoint: %w", err)
			}
			d.println(ep.ID, "disabled")
			return nil
		},
	}
}

func newWebhookRotateCmd(d *deps) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate-secret ENDPOINT_ID",
		Short: "Replace an endpoint's secret and print the new one once",
		Long: `Replace a webhook endpoint's signing secret and print the new one once, alone
on stdout. For 24 hours (the retry window) the previous secret keeps signing
too: every request carries two signatures, space-separated in
webhook-signature ("v1,<new> v1,<previous>"), as Standard Webhooks allows, so
a receiver verifies with whichever secret it has, and deliveries in flight at
the rotation (retried for up to 24 hours) still verify with the old secret.
Switch the receiver to the new secret within that time. A second rotation
forgets the secret rotated out by the first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID("endpoint", db.PrefixWebhookEndpoint, args[0]); err != nil {
				return err
			}
			sealer, err := d.sealer()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			secret := webhook.NewSecret()
			keyID, sealed, err := sealer.Seal(args[0], secret)
			if err != nil {
				return fmt.Errorf("sealing the secret: %w", err)
			}
			until := d.clock().Add(config.WebhookRetryWindow).UTC().Truncate(time.Second)
			ep, err := db.RotateWebhookSecret(ctx, pool, db.RotateWebhookSecretParams{
				ID: args[0], SecretKeyID: keyID, SecretSealed: sealed, PreviousUntil: until,
			})
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("webhook endpoint %s not found", args[0])
			}
			if err != nil {
				return fmt.Errorf("rotating the secret: %w", err)
			}
			if asJSON {
				return d.printJSON(toEndpointJSON(ep, webhook.EncodeSecret(secret)))
			}
			d.println(webhook.EncodeSecret(secret))
			fmt.Fprintf(d.stderr, "endpoint %s: new secret above, shown only now; the previous one also signs until %s\n",
				ep.ID, until.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the endpoint and its new secret as JSON")
	return cmd
}

// deliveryJSON is a delivery in --json output.
type deliveryJSON struct {
	ID         string        `json:"id"`
	EndpointID string        `json:"endpoint_id"`
	URL        string        `json:"url"`
	EventType  string        `json:"event_type"`
	ReportID   string        `json:"report_id"`
	Status     string        `json:"status"`
	CreatedAt  time.Time     `json:"created_at"`
	FinishedAt *time.Time    `json:"finished_at"`
	Attempts   []attemptJSON `json:"attempts"`
}

type attemptJSON struct {
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	StatusCode *int      `json:"status_code"`
	LatencyMS  float64   `json:"latency_ms"`
	Succeeded  bool      `json:"succeeded"`
	Error      *string   `json:"error"`
}

func newWebhookDeliveriesCmd(d *deps) *cobra.Command {
	var ref appRef
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deliveries --app APP [--org ORG] [--limit 20]",
		Short: "Show an application's latest webhook deliveries and their attempts",
		Long: `Show an application's latest webhook deliveries, newest first, each with its
attempts: when, the receiver's status code (or "-" when no answer came),
latency and error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit must be between 1 and 1000, got %d", limit)
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			app, err := ref.resolve(ctx, pool)
			if err != nil {
				return err
			}
			ds, err := db.ListWebhookDeliveries(ctx, pool, app.ID, limit)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]deliveryJSON, len(ds))
				for i, dl := range ds {
					out[i] = deliveryJSON{ID: dl.ID, EndpointID: dl.EndpointID, URL: dl.URL, EventType: dl.EventType,
						ReportID: dl.ReportID, Status: dl.Status, CreatedAt: dl.CreatedAt.UTC(), FinishedAt: utcPtr(dl.FinishedAt),
						Attempts: []attemptJSON{}}
					for _, a := range dl.AttemptLog {
						out[i].Attempts = append(out[i].Attempts, attemptJSON{Attempt: a.Attempt, StartedAt: a.StartedAt.UTC(),
							StatusCode: a.StatusCode, LatencyMS: float64(a.LatencyUS) / 1000, Succeeded: a.Succeeded, Error: a.Error})
					}
				}
				return d.printJSON(out)
			}
			// A line per delivery, then its attempts, aligned among themselves.
			for _, dl := range ds {
				fmt.Fprintf(d.stdout, "%s  %s  %s  %s after %d attempt(s)  -> %s %s\n", dl.ID, dl.EventType, dl.ReportID,
					dl.Status, len(dl.AttemptLog), dl.EndpointID, dl.URL)
				w := tabwriter.NewWriter(d.stdout, 0, 4, 2, ' ', 0)
				for _, a := range dl.AttemptLog {
					code := "-"
					if a.StatusCode != nil {
						code = strconv.Itoa(*a.StatusCode)
					}
					errText := ""
					if a.Error != nil {
						errText = *a.Error
					}
					fmt.Fprintf(w, "  #%d\t%s\t%s\t%.1fms\t%s\n", a.Attempt, a.StartedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
						code, float64(a.LatencyUS)/1000, errText)
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			return nil
		},
	}
	ref.flags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 20, "deliveries to show, newest first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the deliveries and attempts as JSON")
	return cmd
}
