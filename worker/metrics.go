package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/jobs"
)

// Metric names exported on /metrics.
const (
	MetricReportsReady      = "tally_reports_ready_total"
	MetricReportsFailed     = "tally_reports_failed_total"
	MetricGenerationSeconds = "tally_report_generation_seconds"
	MetricReportBytes       = "tally_report_bytes"
	MetricQueueJobs         = "tally_queue_jobs"
	MetricQueueOldest       = "tally_queue_oldest_available_seconds"
	MetricObjectsSwept      = "tally_objects_swept_total"
	MetricUploadsAborted    = "tally_uploads_aborted_total"
	MetricChainLag          = "tally_activity_chain_lag_seconds"
	MetricEventsChained     = "tally_activity_events_chained_total"
	MetricWebhookDeliveries = "tally_webhook_deliveries_total"
	MetricExpiryOverdue     = "tally_reports_expiry_overdue_seconds"
)

// sweepReasons are the reasons an object is swept.
var sweepReasons = []string{
	jobs.SweepReasonOrphan, jobs.SweepReasonSuperseded, jobs.SweepReasonUnfinished,
	jobs.SweepReasonFailed, jobs.SweepReasonCanceled, jobs.SweepReasonExpired,
}

// queueStates are the job states tally_queue_jobs reports.
var queueStates = []string{"available", "running", "retryable", "scheduled"}

// failureCodes are the codes a report can fail with in a worker.
var failureCodes = []string{
	jobs.CodeStorageUnavailable, jobs.CodeDatabaseUnavailable, jobs.CodeAmountOverflow,
	jobs.CodeUnknownReportType, jobs.CodeBuildFailed,
}

// Metrics are a worker process's Prometheus collectors, on a registry of
// their own (no global state). They implement jobs.ReportMetrics.
type Metrics struct {
	registry          *prometheus.Registry
	reportsReady      *prometheus.CounterVec
	reportsFailed     *prometheus.CounterVec
	generationSeconds *prometheus.HistogramVec
	reportBytes       *prometheus.HistogramVec
	queueJobs         *prometheus.GaugeVec
	queueOldest       *prometheus.GaugeVec
	expiryOverdue     prometheus.Gauge
	reproduced        *prometheus.CounterVec
	objectsSwept      *prometheus.CounterVec
	uploadsAborted    prometheus.Counter
	chainLag          prometheus.Gauge
	eventsChained     prometheus.Counter
	webhookAttempts   *prometheus.CounterVec

	mu     sync.Mutex // serializes RefreshQueues
	queues []string   // every queue ever reported, so an emptied one drops to zero
}

var (
	_ jobs.ReportMetrics  = (*Metrics)(nil)
	_ jobs.SweepMetrics   = (*Metrics)(nil)
	_ jobs.WebhookMetrics = (*Metrics)(nil)
)

// NewMetrics registers the worker's collectors, plus the Go runtime and
// process collectors, on a new registry. Series for every configured report
// type and every queue start at zero, so dashboards see them before the first
// report.
func NewMetrics(portal *config.Portal, queues []string) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		reportsReady: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReportsReady,
			Help: "Reports generated and marked ready, by report type.",
		}, []string{"type"}),
		reportsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReportsFailed,
			Help: "Reports marked failed by a worker, by report type and error code.",
		}, []string{"type", "code"}),
		generationSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricGenerationSeconds,
			Help:    "Time from the start of a successful report job to its commit, by report type.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14), // 50 ms .. ~7 min
		}, []string{"type"}),
		reportBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricReportBytes,
			Help:    "Size of generated report files in bytes, by report type.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 12), // 1 KiB .. 4 GiB
		}, []string{"type"}),
		queueJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricQueueJobs,
			Help: "River jobs per queue and state (available, running, retryable, scheduled), refreshed periodically.",
		}, []string{"queue", "state"}),
		queueOldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricQueueOldest,
			Help: "Age in seconds of the oldest available job per queue (0 when none waits), refreshed periodically.",
		}, []string{"queue"}),
		expiryOverdue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricExpiryOverdue,
			Help: "Seconds since the oldest ready report passed its expires_at without being expired (0 when none is due), refreshed periodically.",
		}),
		reproduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_reports_reproduced_total",
			Help: "Ready reports rebuilt by reproduce_reports, by report type and result (match, mismatch); a mismatch is expected never.",
		}, []string{"type", "result"}),
		objectsSwept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricObjectsSwept,
			Help: "Report files deleted by the sweep because no committed report owns them, by reason.",
		}, []string{"reason"}),
		uploadsAborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricUploadsAborted,
			Help: "Incomplete multipart uploads aborted by the sweep.",
		}),
		chainLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricChainLag,
			Help: "Age in seconds of the first committed activity event waiting to enter its organization's hash chain, over all organizations (0 when none waits), refreshed every TALLY_CHAIN_INTERVAL.",
		}),
		eventsChained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricEventsChained,
			Help: "Activity events this process's sequencer appended to their organization's hash chain.",
		}),
		webhookAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWebhookDeliveries,
			Help: "Webhook delivery attempts by result: succeeded (a 2xx), retry (failed, another attempt scheduled), failed (the delivery gave up), canceled (its endpoint was disabled).",
		}, []string{"result"}),
		queues: slices.Clone(queues),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.reportsReady, m.reportsFailed, m.generationSeconds, m.reportBytes, m.queueJobs, m.queueOldest, m.expiryOverdue,
		m.objectsSwept, m.uploadsAborted, m.reproduced, m.webhookAttempts, m.chainLag, m.eventsChained, buildinfo.Get().Collector(),
	)
	for _, r := range []string{jobs.WebhookResultSucceeded, jobs.WebhookResultRetry, jobs.WebhookResultFailed, jobs.WebhookResultCanceled} {
		m.webhookAttempts.WithLabelValues(r)
	}
	for _, r := range sweepReasons {
		m.objectsSwept.WithLabelValues(r)
	}
	if portal != nil {
		for _, t := range portal.TypeNames() {
			m.reportsReady.WithLabelValues(t)
			m.generationSeconds.WithLabelValues(t)
			m.reportBytes.WithLabelValues(t)
			m.reproduced.WithLabelValues(t, "mismatch")
			for _, code := range failureCodes {
				m.reportsFailed.WithLabelValues(t, code)
			}
		}
	}
	for _, q := range queues {
		m.queueOldest.WithLabelValues(q).Set(0)
		for _, s := range queueStates {
			m.queueJobs.WithLabelValues(q, s).Set(0)
		}
	}
	return m
}

// Registry returns the registry the collectors are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ReportReady counts a ready report and observes its duration and size.
func (m *Metrics) ReportReady(reportType string, took time.Duration, sizeBytes int64) {
	m.reportsReady.WithLabelValues(reportType).Inc()
	m.generationSeconds.WithLabelValues(reportType).Observe(took.Seconds())
	m.reportBytes.WithLabelValues(reportType).Observe(float64(sizeBytes))
}

// ObjectsSwept counts objects the sweep deleted.
func (m *Metrics) ObjectsSwept(reason string, n int) {
	m.objectsSwept.WithLabelValues(reason).Add(float64(n))
}

// UploadsAborted counts incomplete uploads the sweep aborted.
func (m *Metrics) UploadsAborted(n int) { m.uploadsAborted.Add(float64(n)) }

// SetChainLag sets the chain lag gauge.
func (m *Metrics) SetChainLag(lag time.Duration) { m.chainLag.Set(lag.Seconds()) }

// EventsChained counts events the sequencer chained.
func (m *Metrics) EventsChained(n int) { m.eventsChained.Add(float64(n)) }

// ReportReproduced counts a rebuilt report by whether it matched.
func (m *Metrics) ReportReproduced(reportType string, match bool) {
	result := "match"
	if !match {
		result = "mismatch"
	}
	m.reproduced.WithLabelValues(reportType, result).Inc()
}

// ReportFailed counts a failed report.
func (m *Metrics) ReportFailed(reportType, code string) {
	m.reportsFailed.WithLabelValues(reportType, code).Inc()
}

// RefreshQueues reads the queue gauges and the expiry lag from the
// database. Queue and state pairs without jobs are set to zero rather than
// left at a stale value.
func (m *Metrics) RefreshQueues(ctx context.Context, pool *pgxpool.Pool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	counts := map[[2]string]float64{}
	for _, q := range m.queues {
		for _, s := range queueStates {
			counts[[2]string{q, s}] = 0
		}
	}
	qc, err := db.QueueCounts(ctx, pool)
	if err != nil {
		return err
	}
	for _, c := range qc {
		counts[[2]string{c.Queue, c.State}] = float64(c.Count)
	}
	ages, err := db.QueueOldestAvailable(ctx, pool)
	if err != nil {
		return err
	}
	overdue, err := db.ExpiryOverdue(ctx, pool)
	if err != nil {
		return err
	}
	m.expiryOverdue.Set(overdue)
	oldest := map[string]float64{}
	for _, q := range m.queues {
		oldest[q] = 0
	}
	for q, age := range ages {
		oldest[q] = age
	}

	for k, v := range counts {
		if !slices.Contains(m.queues, k[0]) {
			m.queues = append(m.queues, k[0])
		}
		m.queueJobs.WithLabelValues(k[0], k[1]).Set(v)
	}
	for q, v := range oldest {
		if !slices.Contains(m.queues, q) {
			m.queues = append(m.queues, q)
		}
		m.queueOldest.WithLabelValues(q).Set(v)
	}
	return nil
}

// WebhookDelivery counts a webhook attempt's result.
func (m *Metrics) WebhookDelivery(result string) {
	m.webhookAttempts.WithLabelValues(result).Inc()
}
