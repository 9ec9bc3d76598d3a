package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tally-compliance/tally/internal/buildinfo"
)

type metrics struct {
	httpDuration *prometheus.HistogramVec
	created      *prometheus.CounterVec
	downloads    *prometheus.CounterVec
	rejected     prometheus.Counter
	// objectMismatch and objectMissing count downloads refused because
	// the stored object is not the report's file: each one is an incident.
	objectMismatch *prometheus.CounterVec
	objectMissing  prometheus.Counter

	downloadsActive  prometheus.Gauge
	downloadsRefused *prometheus.CounterVec
	downloadsStalled prometheus.Counter

	waiting      prometheus.Gauge
	waitsRefused prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tally_http_request_duration_seconds",
			Help:    "Latency of API requests by route, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_reports_created_total",
			Help: "Reports created through the API, by type.",
		}, []string{"type"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_report_downloads_total",
			Help: "Report downloads started, by type.",
		}, []string{"type"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_http_rejected_busy_total",
			Help: "Requests answered 503 because every admission slot was taken.",
		}),
		objectMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_report_object_mismatch_total",
			Help: "Downloads refused because the stored object's size or SHA-256 differs from the report's, by what differed.",
		}, []string{"field"}),
		objectMissing: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_report_object_missing_total",
			Help: "Downloads refused because a ready report's object is missing from the store.",
		}),
		downloadsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tally_report_downloads_in_progress",
			Help: "Report downloads streaming now.",
		}),
		downloadsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tally_report_downloads_refused_total",
			Help: "Downloads answered 429 too_many_downloads, by the limit reached (user or organization).",
		}, []string{"limit"}),
		downloadsStalled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_report_downloads_stalled_total",
			Help: "Downloads cut off because the client read slower than the minimum rate.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tally_report_waits_in_progress",
			Help: "Requests holding with Prefer: wait for a report's status to change.",
		}),
		waitsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_report_waits_refused_total",
			Help: "Requests with Prefer: wait answered 429 too_many_waits.",
		}),
	}
	m.objectMismatch.WithLabelValues("size")
	m.objectMismatch.WithLabelValues("sha256")
	reg.MustRegister(m.httpDuration, m.created, m.downloads, m.rejected, m.downloadsActive, m.downloadsRefused, m.downloadsStalled,
		m.objectMismatch, m.objectMissing, m.waiting, m.waitsRefused, buildinfo.Get().Collector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeHTTP(method, route string, status int, d time.Duration) {
	m.httpDuration.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
}
