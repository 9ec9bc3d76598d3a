package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/internal/telemetry"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/worker"
)

// setupTraced is setup with tracing on into exp, wired as the binaries wire
// it: the pool's pgx tracer, the object store's transport, the River
// plugins of the API's insert-only client, and the API's request spans.
func setupTraced(t *testing.T, tel *telemetry.Telemetry) *testBundle {
	t.Helper()
	ctx := context.Background()
	pool, err := db.Connect(ctx, tallytest.DatabaseURL(t), &db.PoolOpts{MaxConns: 20, Tracer: tel.PGXTracer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s3 := tallytest.S3Opts(t)
	s3.WrapTransport = tel.HTTPTransport()
	store, err := storage.New(s3)
	if err != nil {
		t.Fatal(err)
	}
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: tallytest.Logger(t), Plugins: tel.RiverPlugins()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Opts{Pool: pool, River: rc, Store: store, Portal: portal, Logger: tallytest.Logger(t), Telemetry: tel})
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{pool: pool, store: store, server: srv, fx: newFixture(t, pool), now: time.Now()}
}

// TestTraceOfAReportFromPOSTToWorker: one POST through the Echo app and its
// generation by a real worker (River on PostgreSQL, upload to MinIO) are
// one trace: the request's server span, River's insert span under it, the
// job's work span under the insert (its context carried in the job's
// metadata), and under them pgx query spans and the S3 calls' spans.
func TestTraceOfAReportFromPOSTToWorker(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel := telemetry.New(tp)
	b := setupTraced(t, tel)
	b.startWorker(t, func(o *worker.Opts) { o.Plugins = tel.RiverPlugins() })

	start := time.Now()
	r := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
	if r.Code != http.StatusAccepted {
		t.Fatalf("create: got %d %s, want 202", r.Code, r.Body)
	}
	rep := b.waitReady(t, decode[api.Report](t, r).ID, start)

	const route = "/api/applications/:foreignId/case-reports"
	server := findSpan(t, exp, func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanKind() == trace.SpanKindServer && s.Name() == http.MethodPost+" "+route
	})
	attrs := attrMap(server.Attributes())
	if got := attrs["http.route"].AsString(); got != route {
		t.Errorf("http.route: got %q, want %q", got, route)
	}
	if got := attrs["http.response.status_code"].AsInt64(); got != http.StatusAccepted {
		t.Errorf("http.response.status_code: got %d, want 202", got)
	}
	if got := attrs["tally.request_id"].AsString(); got == "" || got != r.Header().Get("X-Request-ID") {
		t.Errorf("tally.request_id: got %q, want the response's X-Request-ID %q", got, r.Header().Get("X-Request-ID"))
	}
	traceID := server.SpanContext().TraceID()
	inTrace := func(match func(sdktrace.ReadOnlySpan) bool) func(sdktrace.ReadOnlySpan) bool {
		return func(s sdktrace.ReadOnlySpan) bool { return s.SpanContext().TraceID() == traceID && match(s) }
	}

	insert := findSpan(t, exp, inTrace(func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "river.insert_many" && s.SpanKind() == trace.SpanKindProducer
	}))
	// The work span ends after the report is ready: wait for it.
	work := findSpan(t, exp, inTrace(func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "river.work/generate_report" && s.SpanKind() == trace.SpanKindConsumer
	}))
	spans := byID(exp)
	if !descends(spans, insert, server) {
		t.Errorf("the insert span %s is not under the request span %s", insert.SpanContext().SpanID(), server.SpanContext().SpanID())
	}
	if got, want := work.Parent().SpanID(), insert.SpanContext().SpanID(); got != want {
		t.Errorf("work span's parent: got %s, want the insert span %s", got, want)
	}
	if links := work.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != insert.SpanContext().SpanID() {
		t.Errorf("work span's links: got %v, want one to the insert span", links)
	}
	if got := attrMap(work.Attributes())["id"].AsInt64(); rep.JobID == nil || got != *rep.JobID {
		t.Errorf("work span's job id: got %d, want %v", got, rep.JobID)
	}

	// The job's metadata carries the insert span's context.
	var traceparent string
	if err := b.pool.QueryRow(context.Background(), `SELECT metadata->>'traceparent' FROM river_job WHERE id = $1`, *rep.JobID).Scan(&traceparent); err != nil {
		t.Fatal(err)
	}
	if want := insert.SpanContext().SpanID().String(); !strings.Contains(traceparent, traceID.String()+"-"+want) {
		t.Errorf("job metadata traceparent: got %q, want trace %s, span %s", traceparent, traceID, want)
	}

	under := func(parent sdktrace.ReadOnlySpan, scope string, name func(string) bool) func(sdktrace.ReadOnlySpan) bool {
		return inTrace(func(s sdktrace.ReadOnlySpan) bool {
			return s.InstrumentationScope().Name == scope && name(s.Name()) && descends(byID(exp), s, parent)
		})
	}
	const pgxScope, httpScope = "github.com/exaring/otelpgx", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	anyName := func(string) bool { return true }
	findSpan(t, exp, under(server, pgxScope, anyName))                                            // the request's queries
	findSpan(t, exp, under(work, pgxScope, anyName))                                              // the job's queries
	put := findSpan(t, exp, under(work, httpScope, func(n string) bool { return n == "s3 PUT" })) // the upload
	if put.SpanKind() != trace.SpanKindClient {
		t.Errorf("S3 span kind: got %v, want client", put.SpanKind())
	}
}

// TestTracingSpanPerRequest: one server span per request, named by method
// and route template (never the path with its ids), continuing the trace of
// an incoming traceparent, with the final status (5xx: an error, with the
// error's code recorded); probes are not traced, and an unmatched path is
// named by its method alone.
func TestTracingSpanPerRequest(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := setupTraced(t, telemetry.New(tp))
	ctx := context.Background()

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	created := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", withHeader("traceparent", parent))
	if created.Code != http.StatusAccepted {
		t.Fatalf("create: got %d %s, want 202", created.Code, created.Body)
	}
	id := decode[api.Report](t, created).ID
	server := findSpan(t, exp, func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "POST /api/applications/:foreignId/case-reports"
	})
	if got := server.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id: got %s, want the incoming traceparent's", got)
	}
	if got := server.Parent(); got.SpanID().String() != "00f067aa0ba902b7" || !got.IsRemote() {
		t.Errorf("parent: got %s (remote %v), want the incoming traceparent's span, remote", got.SpanID(), got.IsRemote())
	}

	// A 500: the report's object holds other bytes than the report says.
	b.makeReady(t, id, []byte("row_type,contract_id\ntotal,,EUR\n"))
	rep, err := db.GetReportByID(ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Put(ctx, *rep.ObjectKey, strings.NewReader("other bytes"), "text/csv; charset=utf-8"); err != nil {
		t.Fatal(err)
	}
	if r := b.do(t, http.MethodGet, "/api/reports/"+id+"/download", b.fx.tokens["owner"], nil); r.Code != http.StatusInternalServerError {
		t.Fatalf("download: got %d %s, want 500", r.Code, r.Body)
	}
	download := findSpan(t, exp, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "GET /api/reports/:reportId/download" })
	if got := attrMap(download.Attributes())["http.response.status_code"].AsInt64(); got != http.StatusInternalServerError {
		t.Errorf("download status attribute: got %d, want 500", got)
	}
	if got := download.Status().Code; got != codes.Error {
		t.Errorf("download span status: got %v, want Error", got)
	}
	var recorded string
	for _, ev := range download.Events() {
		if ev.Name == "exception" {
			recorded = attrMap(ev.Attributes)["tally.error_code"].AsString()
		}
	}
	if recorded != api.CodeReportObjectMismatch {
		t.Errorf("recorded error code: got %q, want %q", recorded, api.CodeReportObjectMismatch)
	}

	if r := b.do(t, http.MethodGet, "/no/such/path", b.fx.tokens["full"], nil); r.Code != http.StatusNotFound {
		t.Fatalf("unmatched: got %d, want 404", r.Code)
	}
	findSpan(t, exp, func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == http.MethodGet && attrMap(s.Attributes())["http.response.status_code"].AsInt64() == http.StatusNotFound
	})
	if r := b.do(t, http.MethodGet, "/healthz", "", nil); r.Code != http.StatusOK {
		t.Fatalf("healthz: got %d, want 200", r.Code)
	}
	for _, s := range exp.GetSpans().Snapshots() {
		if s.SpanKind() == trace.SpanKindServer && strings.Contains(s.Name(), "healthz") {
			t.Errorf("probe traced: %s", s.Name())
		}
		if strings.Contains(s.Name(), id) {
			t.Errorf("span name %q holds the report id", s.Name())
		}
	}
}

// findSpan returns the first exported span that match accepts, waiting for
// it: spans are exported when they end, and a job's span ends after the
// report it makes is ready.
func findSpan(t *testing.T, exp *tracetest.InMemoryExporter, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range exp.GetSpans().Snapshots() {
			if match(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range exp.GetSpans().Snapshots() {
				names = append(names, s.Name())
			}
			t.Fatalf("no such span among %d exported: %v", len(names), names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func byID(exp *tracetest.InMemoryExporter) map[trace.SpanID]sdktrace.ReadOnlySpan {
	m := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		m[s.SpanContext().SpanID()] = s
	}
	return m
}

// descends reports whether s is a descendant of ancestor, through spans
// already exported.
func descends(spans map[trace.SpanID]sdktrace.ReadOnlySpan, s, ancestor sdktrace.ReadOnlySpan) bool {
	for p := s.Parent(); p.IsValid(); {
		if p.SpanID() == ancestor.SpanContext().SpanID() {
			return true
		}
		parent, ok := spans[p.SpanID()]
		if !ok {
			return false
		}
		p = parent.Parent()
	}
	return false
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}
