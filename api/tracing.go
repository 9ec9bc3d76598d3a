package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the API's spans' instrumentation scope.
const tracerName = "github.com/tally-compliance/tally/api"

// tracing starts a server span per request, the child of the trace context
// the request's headers carry (W3C traceparent and baggage), and puts it in
// the request's context, so that the queries, the job insert and the object
// store calls of the request are its children. The span is named by method
// and route template ("POST /api/applications/:foreignId/case-reports"),
// never by the raw path with its ids. It is the outermost middleware, so
// it sees the final status; the error handler records 5xx errors on it.
// Probes and /metrics are not traced. Installed only when tracing is on.
func tracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) echo.MiddlewareFunc {
	tracer := tp.Tracer(tracerName)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if isProbe(req.URL.Path) {
				return next(c)
			}
			route := c.Path()
			name := req.Method
			if route != "" {
				name += " " + route
			}
			attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(req.Method), semconv.URLScheme(c.Scheme())}
			if route != "" {
				attrs = append(attrs, semconv.HTTPRoute(route))
			}
			ctx := prop.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
			ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))

			if err := next(c); err != nil {
				c.Error(err) // writes the response now, so the status below is final
			}
			status := c.Response().Status
			span.SetAttributes(semconv.HTTPResponseStatusCode(status), attribute.String("tally.request_id", requestID(c)))
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			return nil
		}
	}
}
