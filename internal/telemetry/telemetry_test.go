package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tally-compliance/tally/internal/telemetry"
)

// otelVars are the variables that could turn tracing on; each test clears
// them all first, so that the machine's environment does not leak in.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
}

func clearOTEL(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
}

// restoreGlobals puts OpenTelemetry's globals back when the test ends.
func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
	})
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"exporter otlp, default endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"service name alone", map[string]string{"OTEL_SERVICE_NAME": "tally"}, false},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"sdk disabled, any case", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"sdk not disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := telemetry.Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSetupWithoutVariablesIsNoop: with no OTEL_* variable, Setup returns
// nil, installs nothing (the global provider stays the no-op one, whose
// spans record nothing and carry no ids), and the nil Telemetry hands the
// binaries nothing to install in their hot paths.
func TestSetupWithoutVariablesIsNoop(t *testing.T) {
	clearOTEL(t)
	restoreGlobals(t)
	tel, err := telemetry.Setup(context.Background(), "tally-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if tel != nil {
		t.Fatalf("Setup: got %+v, want nil (tracing off)", tel)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "span")
	defer span.End()
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("global tracer provider records spans (%T): want the no-op provider", otel.GetTracerProvider())
	}
	if tel.PGXTracer() != nil || tel.HTTPTransport() != nil || tel.RiverPlugins() != nil || tel.TracerProvider() != nil || tel.Propagator() != nil {
		t.Error("a nil Telemetry hands out instrumentation: want nil for each")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of nil: %v", err)
	}
}

// TestSetupExportsOverOTLPHTTP: with an endpoint set, spans go to it as
// OTLP/HTTP protobuf when flushed, named by OTEL_SERVICE_NAME over the
// binary's name, and the W3C propagators are installed.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	clearOTEL(t)
	restoreGlobals(t)
	var (
		mu   sync.Mutex
		reqs []*collectortrace.ExportTraceServiceRequest
		errs []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			errs = append(errs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		}
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			errs = append(errs, err.Error())
		}
		reqs = append(reqs, req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "tally-from-env")

	tel, err := telemetry.Setup(context.Background(), "tally-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if tel == nil {
		t.Fatal("Setup: got nil with OTEL_EXPORTER_OTLP_ENDPOINT set, want tracing on")
	}
	if otel.GetTracerProvider() != tel.TracerProvider() {
		t.Error("Setup did not install its provider as the global one")
	}
	_, span := otel.Tracer("test").Start(context.Background(), "exported-span")
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(trace.ContextWithSpan(context.Background(), span), carrier)
	span.End()
	if !strings.Contains(carrier["traceparent"], span.SpanContext().TraceID().String()) {
		t.Errorf("global propagator wrote traceparent %q, want the span's trace id", carrier["traceparent"])
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("collector got bad requests: %v", errs)
	}
	var names, services []string
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					services = append(services, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
	}
	if len(names) != 1 || names[0] != "exported-span" {
		t.Errorf("exported spans: got %v, want [exported-span]", names)
	}
	if len(services) != 1 || services[0] != "tally-from-env" {
		t.Errorf("service.name: got %v, want [tally-from-env]", services)
	}
}

func TestSetupRejectsWhatIsNotBuiltIn(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "only http/protobuf and http/json"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", "only http/protobuf and http/json"},
		{"OTEL_TRACES_EXPORTER", "zipkin", "only otlp"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			clearOTEL(t)
			restoreGlobals(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv(tc.key, tc.value)
			before := otel.GetTracerProvider()
			tel, err := telemetry.Setup(context.Background(), "tally-test", slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, %v; want an error saying %q", tel, err, tc.want)
			}
			if otel.GetTracerProvider() != before {
				t.Error("a failed Setup changed the global tracer provider")
			}
		})
	}
}

// TestContextFromMetadata: a job's stored traceparent becomes the parent of
// the spans started from the returned context; metadata without one, or
// that is not JSON, leaves the context as it is.
func TestContextFromMetadata(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := telemetry.ContextFromMetadata(context.Background(), []byte(`{"traceparent":"`+tp+`","other":1}`))
	sc := trace.SpanContextFromContext(ctx)
	if got := sc.TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("trace id: got %s", got)
	}
	if got := sc.SpanID().String(); got != "b7ad6b7169203331" || !sc.IsRemote() || !sc.IsSampled() {
		t.Errorf("span context: got %s remote=%v sampled=%v, want b7ad6b7169203331, remote, sampled", got, sc.IsRemote(), sc.IsSampled())
	}
	for _, md := range []string{``, `{}`, `{"traceparent":1}`, `not json`, `{"traceparent":"garbage"}`} {
		if sc := trace.SpanContextFromContext(telemetry.ContextFromMetadata(context.Background(), []byte(md))); sc.IsValid() {
			t.Errorf("metadata %q: got span context %v, want none", md, sc)
		}
	}
}
