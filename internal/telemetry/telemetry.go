// Package telemetry is Tally's tracing: OpenTelemetry spans exported over
// OTLP/HTTP, on only when the standard OTEL_* variables ask for it. It hands
// the binaries what they wire into their dependencies: a pgx tracer for the
// database pool, an HTTP transport wrapper for the object store client, River
// plugins that carry the trace context in a job's metadata, and the tracer
// provider and propagator of the API's request spans.
//
// A nil *Telemetry is tracing off: every method then returns nothing to
// install, so the hot paths run exactly as without this package.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is a process's tracing. Build it with Setup (from the
// environment) or New (from a provider, in tests).
type Telemetry struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// Enabled reports whether the environment turns tracing on: an OTLP
// endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or OTEL_TRACES_EXPORTER=otlp, and
// neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns it off.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup reads the OTEL_* variables; logger receives export failures. When they leave tracing off it returns
// nil (a no-op: the global tracer provider stays OpenTelemetry's no-op one
// and no exporter goroutine starts). Otherwise it installs, as the process's
// globals, a tracer provider that batches spans to an OTLP/HTTP exporter and
// the W3C trace-context and baggage propagators, and returns them.
//
// The SDK reads the rest of the variables itself: the endpoint, headers,
// timeout, compression and TLS files (OTEL_EXPORTER_OTLP_*), the sampler
// (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), the batching
// (OTEL_BSP_*), and the resource (OTEL_SERVICE_NAME, which overrides
// serviceName, and OTEL_RESOURCE_ATTRIBUTES). Only OTLP over HTTP is built
// in: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is an error, as is a
// OTEL_TRACES_EXPORTER other than otlp or none.
func Setup(ctx context.Context, serviceName string, logger *slog.Logger) (*Telemetry, error) {
	if !Enabled(os.Getenv) {
		return nil, nil
	}
	if e := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); e != "" && e != "otlp" {
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", e)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" && protocol != "http/json" {
		return nil, fmt.Errorf("telemetry: OTLP protocol %q: only http/protobuf and http/json are supported (the collector's port 4318)", protocol)
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating the OTLP exporter: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// (WithFromEnv) override the binary's own name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: building the resource: %w", err)
	}
	// No WithSampler: the SDK then takes OTEL_TRACES_SAMPLER, and
	// parentbased_always_on without it.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	t := New(tp)
	t.shutdown = tp.Shutdown
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(t.propagator)
	// Export failures (a collector down) go to the process's log, not
	// stderr's plain text; the SDK drops the spans and carries on.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing", slog.String("error", err.Error()))
	}))
	return t, nil
}

// New returns tracing on tp with the W3C trace-context and baggage
// propagators, leaving the globals alone. Its Shutdown does nothing: tp
// belongs to the caller. For tests, with an in-memory exporter.
func New(tp trace.TracerProvider) *Telemetry {
	return &Telemetry{
		provider:   tp,
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
}

// Shutdown flushes the spans not yet exported and stops the exporter. Call
// it once the process's work is done, with a deadline.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing spans: %w", err)
	}
	return nil
}

// FlushTimeout bounds Close: how long a stopping process waits for its
// last spans to be exported.
const FlushTimeout = 5 * time.Second

// Close flushes and stops tracing at the end of a process, within
// FlushTimeout even when ctx is already done, and logs a failure rather
// than failing the process's exit for it.
func (t *Telemetry) Close(ctx context.Context, logger *slog.Logger) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FlushTimeout)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.WarnContext(ctx, "flushing traces", slog.String("error", err.Error()))
	}
}

// TracerProvider returns the provider of spans; nil when tracing is off.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Propagator returns the propagator that reads and writes trace context in
// HTTP headers (W3C traceparent, tracestate and baggage); nil when tracing
// is off.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return nil
	}
	return t.propagator
}

// PGXTracer returns the pgx tracer of a database pool: a span per query,
// batch, copy, prepare and pool acquire, each the child of the span in the
// query's context (none without one: River's own polling makes no traces).
// Query parameters are never recorded. Nil when tracing is off.
func (t *Telemetry) PGXTracer() pgx.QueryTracer {
	if t == nil {
		return nil
	}
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(t.provider))
}

// HTTPTransport returns a function that wraps an HTTP transport in client
// spans, for the object store's client; nil when tracing is off. It
// propagates the trace context in the requests' headers, which S3 ignores
// and which are not part of its signature.
func (t *Telemetry) HTTPTransport() func(http.RoundTripper) http.RoundTripper {
	if t == nil {
		return nil
	}
	return func(rt http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(rt,
			otelhttp.WithTracerProvider(t.provider),
			otelhttp.WithPropagators(t.propagator),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "s3 " + r.Method }),
		)
	}
}

// RiverPlugins returns the River plugins of a client that inserts or works
// jobs; nil when tracing is off. At insert, a river.insert_many span (a
// producer span, the child of the caller's span) writes its W3C trace
// context into each job's metadata (traceparent, tracestate); at work, the
// river.work span is that span's child, so the request that created a job
// and the job's work share one trace, however late or often it runs. The
// work span also links to the inserting span, as otelriver does.
func (t *Telemetry) RiverPlugins() []rivertype.Plugin {
	if t == nil {
		return nil
	}
	return []rivertype.Plugin{&riverTracing{Middleware: otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
		EnableTracePropagation:      true,
		EnableWorkSpanJobKindSuffix: true,
		TracerProvider:              t.provider,
	})}}
}

// riverTracing is otelriver's middleware with the job's stored trace context
// as the parent of its work span: otelriver alone only links to it, which
// starts a new trace per job.
type riverTracing struct {
	*otelriver.Middleware
}

// Work starts the job's work span as a child of the trace context its
// metadata carries, when it carries one.
func (m *riverTracing) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	return m.Middleware.Work(ContextFromMetadata(ctx, job.Metadata), job, doInner)
}

// ContextFromMetadata returns ctx with the remote span context that a job's
// metadata carries (its traceparent and tracestate keys) as the parent of
// the spans started from it; ctx itself when the metadata carries none or
// ctx already has a span.
func ContextFromMetadata(ctx context.Context, metadata []byte) context.Context {
	if len(metadata) == 0 || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	var carrier struct {
		TraceParent string `json:"traceparent"`
		TraceState  string `json:"tracestate"`
	}
	if err := json.Unmarshal(metadata, &carrier); err != nil || carrier.TraceParent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{
		"traceparent": carrier.TraceParent,
		"tracestate":  carrier.TraceState,
	})
}
