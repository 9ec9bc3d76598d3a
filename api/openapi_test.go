package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/webhook"
)

// adminPrefix is where River UI is mounted (api/riverui.go). Only its entry
// page is in the spec: its other pages, assets and JSON API are River UI's.
const adminPrefix = "/admin/riverui"

// openAPISpec is api/openapi.yaml, loaded, validated and routed once for
// every test.
type openAPISpec struct {
	doc    *openapi3.T
	router routers.Router
}

var loadOpenAPI = sync.OnceValues(func() (*openAPISpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPISpec())
	if err != nil {
		return nil, fmt.Errorf("loading api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validating api/openapi.yaml: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing api/openapi.yaml: %w", err)
	}
	return &openAPISpec{doc: doc, router: router}, nil
})

// checkOpenAPI validates a recorded response against api/openapi.yaml: its
// status must be documented for the operation, its headers must match the
// documented ones (required ones present), and its body must match the
// documented media type and, for JSON, the schema. Requests are not validated:
// tests send malformed requests on purpose, and what matters is that the
// answer to them is documented.
//
// HEAD and 304 responses, which kin-openapi skips, are checked here for
// status, headers and an empty body. A request the spec has no route for is
// checked against the generic error shape: an unknown path must be answered
// 404 not_found, a method the path does not have 405 method_not_allowed.
// Under /admin/riverui, answers other than the 401 and 404 error shapes are
// River UI's own and are not checked.
func checkOpenAPI(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	spec, err := loadOpenAPI()
	if err != nil {
		t.Errorf("OpenAPI: api/openapi.yaml does not load (see TestOpenAPISpecValid): %v", truncateErr(err))
		return
	}
	if err := spec.check(req, rec); err != nil {
		t.Errorf("OpenAPI: %s %s answered %d: %v", req.Method, req.URL.RequestURI(), rec.Code, err)
	}
}

func truncateErr(err error) string {
	if s := err.Error(); len(s) > 200 {
		return s[:200] + "…"
	}
	return err.Error()
}

func (s *openAPISpec) check(req *http.Request, rec *httptest.ResponseRecorder) error {
	res := rec.Result()
	body := rec.Body.Bytes()
	route, params, err := s.router.FindRoute(req)
	var routeErr *routers.RouteError
	if errors.As(err, &routeErr) {
		return s.checkUnrouted(req, res.StatusCode, res.Header, body, s.pathHasOperations(req))
	}
	if err != nil {
		return fmt.Errorf("finding the route: %w", err)
	}
	ref := route.Operation.Responses.Status(res.StatusCode)
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("status %d is not documented for %s %s", res.StatusCode, route.Method, route.Path)
	}
	response := ref.Value
	if len(response.Content) == 0 && len(body) > 0 {
		return fmt.Errorf("status %d is documented without a body, got %d bytes", res.StatusCode, len(body))
	}
	if req.Method == http.MethodHead || res.StatusCode == http.StatusNotModified {
		if len(body) > 0 {
			return fmt.Errorf("%d bytes of body, want none", len(body))
		}
		return checkHeaders(response, res.Header)
	}
	opts := &openapi3filter.Options{
		ExcludeRequestBody:    true,
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route, Options: opts,
		},
		Status:  res.StatusCode,
		Header:  res.Header,
		Options: opts,
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// pathHasOperations reports whether the spec has an operation for req's path
// with some other method. (The legacy router tells "method not allowed" from
// "no such path" only for paths without parameters.)
func (s *openAPISpec) pathHasOperations(req *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		r := req.Clone(context.Background())
		r.Method = m
		if _, _, err := s.router.FindRoute(r); err == nil {
			return true
		}
	}
	return false
}

// checkHeaders validates the documented headers of a response kin-openapi
// does not validate (HEAD, 304).
func checkHeaders(response *openapi3.Response, h http.Header) error {
	for name, ref := range response.Headers {
		hdr := ref.Value
		values := h.Values(name)
		if len(values) == 0 {
			if hdr.Required {
				return fmt.Errorf("response header %q missing", name)
			}
			continue
		}
		if len(values) > 1 {
			return fmt.Errorf("response header %q given %d times", name, len(values))
		}
		if hdr.Schema == nil || hdr.Schema.Value == nil {
			continue
		}
		var v any = values[0]
		if hdr.Schema.Value.Type.Is(openapi3.TypeInteger) {
			n, err := strconv.ParseInt(values[0], 10, 64)
			if err != nil {
				return fmt.Errorf("response header %q = %q is not an integer", name, values[0])
			}
			v = n
		}
		if err := hdr.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return fmt.Errorf("response header %q doesn't match schema: %w", name, err)
		}
	}
	return nil
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// checkUnrouted checks the answer to a request that no operation of the spec
// describes.
func (s *openAPISpec) checkUnrouted(req *http.Request, status int, h http.Header, body []byte, methodNotAllowed bool) error {
	var code string
	switch {
	case strings.HasPrefix(req.URL.Path, adminPrefix) && status == http.StatusUnauthorized:
		if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			return fmt.Errorf("WWW-Authenticate = %q, want a Basic challenge", h.Get("WWW-Authenticate"))
		}
		code = "admin_auth_required"
	case strings.HasPrefix(req.URL.Path, adminPrefix) && status != http.StatusNotFound:
		return nil // River UI's own page, asset or API
	case methodNotAllowed && status == http.StatusMethodNotAllowed:
		code = "method_not_allowed"
	case methodNotAllowed:
		return fmt.Errorf("the spec has no %s operation on this path, so the answer must be 405 method_not_allowed", req.Method)
	case status == http.StatusNotFound:
		code = "not_found"
	default:
		return errors.New("no path of the spec matches, so the answer must be 404 not_found")
	}
	if id := h.Get("X-Request-ID"); !requestIDPattern.MatchString(id) {
		return fmt.Errorf("X-Request-ID = %q", id)
	}
	if req.Method == http.MethodHead {
		if len(body) > 0 {
			return fmt.Errorf("%d bytes of body, want none", len(body))
		}
		return nil
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type = %q, want application/json", ct)
	}
	v, err := openapi3filter.JSONBodyDecoder(bytes.NewReader(body), h, nil, nil)
	if err != nil {
		return fmt.Errorf("decoding the error body: %w", err)
	}
	schema := s.doc.Components.Schemas["Error"].Value
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		return fmt.Errorf("body doesn't match schema Error: %w", err)
	}
	if got := v.(map[string]any)["error"].(map[string]any)["code"]; got != code {
		return fmt.Errorf("error code %v, want %s", got, code)
	}
	return nil
}

// TestOpenAPISpecValid checks that the spec is valid OpenAPI, that it has
// exactly the operations routes.go registers, that its ErrorCode enum is
// exactly the Code constants of package api, and that every response carries
// X-Request-ID.
func TestOpenAPISpecValid(t *testing.T) {
	t.Parallel()
	spec, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc := spec.doc
	if got := doc.OpenAPI; got != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", got)
	}
	// Stricter than the defaults: unknown formats are errors too.
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation()); err != nil {
		t.Errorf("strict validation: %v", err)
	}

	routes := echoRoutes(t, "routes.go")
	if len(routes) < 9 {
		t.Fatalf("found %d routes in routes.go, want at least 9: %v", len(routes), routes)
	}
	inCode := map[string]bool{"GET " + adminPrefix + "/": true} // mounted by riverui.go
	for _, r := range routes {
		inCode[r] = true
		method, path, _ := strings.Cut(r, " ")
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("route %s is not in api/openapi.yaml", r)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !inCode[method+" "+path] {
				t.Errorf("api/openapi.yaml has %s %s, which routes.go does not register", method, path)
			}
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for status, ref := range op.Responses.Map() {
				if ref.Value.Headers["X-Request-ID"] == nil {
					t.Errorf("%s %s response %s does not document X-Request-ID", method, path, status)
				}
			}
			if op.Responses.Status(http.StatusInternalServerError) == nil {
				t.Errorf("%s %s does not document 500", method, path)
			}
		}
	}

	apiCodes := codeConstants(t, ".", codeConstants(t, "../jobs", nil))
	if diff := cmpEnum(t, doc, "ErrorCode", slices.Collect(maps.Values(apiCodes))); diff != "" {
		t.Errorf("ErrorCode enum mismatch with the Code constants of package api (-spec +code):\n%s", diff)
	}
}

// TestOpenAPIReportErrorCodes checks that the ReportErrorCode enum is exactly
// the codes a failed, canceled or expired report can carry: the Code
// constants of package jobs (written by the worker) and the literals that
// SQL writes into reports.error_code (db's queries and the river_job
// triggers of db/migrations).
func TestOpenAPIReportErrorCodes(t *testing.T) {
	t.Parallel()
	spec, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	jobCodes := codeConstants(t, "../jobs", nil)
	codes := slices.Collect(maps.Values(jobCodes))
	sqlCodes := sqlErrorCodes(t, "../db/*.go", "../db/migrations/*.sql")
	for _, want := range []string{"canceled", "job_discarded", "report_expired"} {
		if !slices.Contains(sqlCodes, want) {
			t.Errorf("SQL writes no error_code %q: is sqlErrorCodes still finding the literals? found %v", want, sqlCodes)
		}
	}
	codes = append(codes, sqlCodes...)
	if diff := cmpEnum(t, spec.doc, "ReportErrorCode", codes); diff != "" {
		t.Errorf("ReportErrorCode enum mismatch with jobs.Code* and SQL error_code literals (-spec +code):\n%s", diff)
	}
}

// cmpEnum compares the enum of the named schema with codes, as sets.
func cmpEnum(t *testing.T, doc *openapi3.T, schema string, codes []string) string {
	t.Helper()
	ref := doc.Components.Schemas[schema]
	if ref == nil || ref.Value == nil {
		t.Fatalf("api/openapi.yaml has no schema %s", schema)
	}
	var enum []string
	for _, v := range ref.Value.Enum {
		enum = append(enum, v.(string))
	}
	slices.Sort(enum)
	slices.Sort(codes)
	return cmp.Diff(enum, slices.Compact(codes))
}

// echoRoutes returns "METHOD /openapi/{path}" for every route registered in
// file, following the prefixes of Echo groups. Paths may be string literals,
// constants declared in the file, and concatenations of those.
func echoRoutes(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]ast.Expr{}
	ast.Inspect(f, func(n ast.Node) bool {
		if gd, ok := n.(*ast.GenDecl); ok && gd.Tok == token.CONST {
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						consts[name.Name] = vs.Values[i]
					}
				}
			}
		}
		return true
	})
	var str func(e ast.Expr) (string, bool)
	str = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return str(v)
			}
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				l, lok := str(e.X)
				r, rok := str(e.Y)
				return l + r, lok && rok
			}
		case *ast.ParenExpr:
			return str(e.X)
		}
		return "", false
	}
	prefixes := map[string]string{}
	var routes []string
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt: // g := parent.Group("/prefix", ...)
			if len(n.Lhs) != 1 || len(n.Rhs) != 1 {
				return true
			}
			call, ok := n.Rhs[0].(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Group" || len(call.Args) == 0 {
				return true
			}
			parent, _ := sel.X.(*ast.Ident)
			name, _ := n.Lhs[0].(*ast.Ident)
			prefix, ok := str(call.Args[0])
			if parent != nil && name != nil && ok {
				prefixes[name.Name] = prefixes[parent.Name] + prefix
			}
		case *ast.CallExpr: // g.GET("/path", handler, ...)
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || len(n.Args) < 2 {
				return true
			}
			switch sel.Sel.Name {
			case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "Any", "Match", "Add":
			default:
				return true
			}
			recv, _ := sel.X.(*ast.Ident)
			path, ok := str(n.Args[0])
			if recv == nil || !ok || sel.Sel.Name == "Any" || sel.Sel.Name == "Match" || sel.Sel.Name == "Add" {
				t.Errorf("%s: cannot tell the route of %s.%s(...): extend echoRoutes", file, recv, sel.Sel.Name)
				return true
			}
			routes = append(routes, sel.Sel.Name+" "+param.ReplaceAllString(prefixes[recv.Name]+path, "{$1}"))
		}
		return true
	})
	return routes
}

// codeConstants returns the Code* constants declared in the non-test Go
// files of dir, name to value. A constant may be a string literal or another
// package's constant (jobs.CodeX), looked up by name in other.
func codeConstants(t *testing.T, dir string, other map[string]string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					switch v := vs.Values[i].(type) {
					case *ast.BasicLit:
						s, err := strconv.Unquote(v.Value)
						if v.Kind != token.STRING || err != nil {
							t.Fatalf("%s: %s is not a string constant", file, name.Name)
						}
						codes[name.Name] = s
					case *ast.SelectorExpr:
						s, ok := other[v.Sel.Name]
						if !ok {
							t.Fatalf("%s: %s refers to %s, which is not among the constants given", file, name.Name, v.Sel.Name)
						}
						codes[name.Name] = s
					default:
						t.Fatalf("%s: cannot tell the value of %s: extend codeConstants", file, name.Name)
					}
				}
			}
		}
	}
	if len(codes) == 0 {
		t.Fatalf("no Code constants in %s", dir)
	}
	return codes
}

// errorCodeLiteral is SQL setting a report's error code to a literal.
var errorCodeLiteral = regexp.MustCompile(`error_code\s*=\s*'([a-z_]+)'`)

// sqlErrorCodes returns the distinct literals that the files matching the
// patterns assign to error_code.
func sqlErrorCodes(t *testing.T, patterns ...string) []string {
	t.Helper()
	var codes []string
	for _, pattern := range patterns {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no files match %s (%v)", pattern, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range errorCodeLiteral.FindAllSubmatch(b, -1) {
				if c := string(m[1]); !slices.Contains(codes, c) {
					codes = append(codes, c)
				}
			}
		}
	}
	return codes
}

func TestServeOpenAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodGet, "/openapi.yaml", "", nil)
	if r.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", r.Code)
	}
	if ct := r.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	if !bytes.Equal(r.Body.Bytes(), api.OpenAPISpec()) {
		t.Errorf("body (%d bytes) is not the embedded spec (%d bytes)", r.Body.Len(), len(api.OpenAPISpec()))
	}
}

// TestOpenAPIOperations sends one request per status of the operations the
// other tests do not reach (HEAD downloads, probes, metrics, River UI, unknown
// paths and methods), so that b.do checks their answers against the spec.
func TestOpenAPIOperations(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{adminUser: "admin", adminPassword: "s3cret"})
	full, owner := b.fx.tokens["full"], b.fx.tokens["owner"]
	pending := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	ready := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	content := []byte("row_type,amount\ntotal,1.00\n")
	b.makeReady(t, ready, content)
	etag := `"` + sha256Hex(content) + `"`
	appDL := func(id string) string { return "/api/applications/alpha/reports/" + id + "/download" }
	basic := func(user, pass string) reqOpt {
		return withHeader("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}

	tests := []struct {
		name, method, path, token string
		opts                      []reqOpt
		status                    int
	}{
		{"HeadApp200", "HEAD", appDL(ready), full, nil, 200},
		{"HeadApp304", "HEAD", appDL(ready), full, []reqOpt{withHeader("If-None-Match", etag)}, 304},
		{"HeadApp401", "HEAD", appDL(ready), "", nil, 401},
		{"HeadApp403", "HEAD", appDL(ready), b.fx.tokens["list"], nil, 403},
		{"HeadApp404", "HEAD", appDL("rpt_01aaaaaaaaaaaaaaaaaaaaaaaa"), full, nil, 404},
		{"HeadApp409", "HEAD", appDL(pending), full, nil, 409},
		{"HeadOrg200", "HEAD", "/api/reports/" + ready + "/download", owner, nil, 200},
		{"HeadOrg403", "HEAD", "/api/reports/" + ready + "/download", full, nil, 403},
		{"OrgDownloadRange206", "GET", "/api/reports/" + ready + "/download", owner, []reqOpt{withHeader("Range", "bytes=0-3")}, 206},
		{"OrgDownload304", "GET", "/api/reports/" + ready + "/download", owner, []reqOpt{withHeader("If-None-Match", etag)}, 304},
		{"OrgDownload409", "GET", "/api/reports/" + pending + "/download", owner, nil, 409},
		{"OrgList422", "GET", "/api/reports?limit=0", owner, nil, 422},
		{"Healthz", "GET", "/healthz", "", nil, 200},
		{"Readyz", "GET", "/readyz", "", nil, 200},
		{"Metrics", "GET", "/metrics", "", nil, 200},
		{"RequestIDKept", "GET", "/healthz", "", []reqOpt{withHeader("X-Request-ID", "portal:trace-1")}, 200},
		{"RequestIDReplaced", "GET", "/healthz", "", []reqOpt{withHeader("X-Request-ID", "bad id\"")}, 200},
		{"RiverUI200", "GET", "/admin/riverui/", "", []reqOpt{basic("admin", "s3cret")}, 200},
		{"RiverUINoCredentials401", "GET", "/admin/riverui/", "", nil, 401},
		{"RiverUIWrongPassword401", "GET", "/admin/riverui/", "", []reqOpt{basic("admin", "nope")}, 401},
		{"RiverUIBearer401", "GET", "/admin/riverui/", full, nil, 401},
		{"UnknownPath404", "GET", "/api/nope", full, nil, 404},
		{"UnknownPathNoToken404", "GET", "/nope", "", nil, 404},
		{"WrongMethod405", "DELETE", "/auth/me", full, nil, 405},
		{"HeadOnGetOnly405", "HEAD", "/auth/me", full, nil, 405},
		{"WrongMethodOnTemplate405", "PUT", appDL(ready), full, nil, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.token, nil, tt.opts...)
			if r.Code != tt.status {
				t.Fatalf("got %d %s, want %d", r.Code, r.Body, tt.status)
			}
		})
	}

	kept := b.do(t, "GET", "/healthz", "", nil, withHeader("X-Request-ID", "portal:trace-1"))
	if got := kept.Header().Get("X-Request-ID"); got != "portal:trace-1" {
		t.Errorf("X-Request-ID = %q, want the caller's portal:trace-1", got)
	}
}

func TestOpenAPIRiverUIOff404(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/admin/riverui/", "", nil)
	if r.Code != http.StatusNotFound || r.errorCode(t) != api.CodeNotFound {
		t.Fatalf("got %d %s, want 404 not_found", r.Code, r.Body)
	}
}

// TestOpenAPIWebhooks checks the webhooks section against what the worker
// sends: a payload built by jobs.WebhookPayload matches WebhookEvent, and
// the headers webhook.Headers writes match the documented parameters.
func TestOpenAPIWebhooks(t *testing.T) {
	t.Parallel()
	spec, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	size, sum, ct := int64(97), strings.Repeat("ab", 32), "text/csv; charset=utf-8"
	now := time.Now()
	code, msg := "build_failed", "boom"
	scope := `"case_id":"` + db.NewID(db.PrefixCase) + `","period_start":"2025-01-01T00:00:00Z","period_end":"2025-02-01T00:00:00Z",` +
		`"disclosure_flags":[],"contract_filters":[],"data_as_of":"2025-03-01T00:00:00Z"`
	reports := map[string]*db.Report{
		db.EventTypeReportReady: {ID: db.NewID(db.PrefixReport), OrgID: db.NewID(db.PrefixOrganization),
			ApplicationID: db.NewID(db.PrefixApplication), Type: "transaction_summary", Status: db.ReportReady,
			Metadata:       []byte(`{` + scope + `,"row_count":3,"format":"csv"}`),
			CreatedByEmail: "a@example.com", CreatedByName: "A", CreatedAt: now, StartedAt: &now, CompletedAt: &now,
			ExpiresAt: &now, SizeBytes: &size, SHA256: &sum, ContentType: &ct},
		db.EventTypeReportFailed: {ID: db.NewID(db.PrefixReport), OrgID: db.NewID(db.PrefixOrganization),
			ApplicationID: db.NewID(db.PrefixApplication), Type: "transaction_summary", Status: db.ReportFailed,
			Metadata: []byte(`{` + scope + `}`), CreatedByEmail: "a@example.com", CreatedByName: "A", CreatedAt: now,
			StartedAt: &now, CompletedAt: &now, ErrorCode: &code, ErrorMessage: &msg},
	}
	schema := spec.doc.Components.Schemas["WebhookEvent"].Value
	for event, rep := range reports {
		item := spec.doc.Webhooks[event]
		if item == nil || item.Post == nil {
			t.Fatalf("api/openapi.yaml has no webhook %s", event)
		}
		body, err := jobs.WebhookPayload(event, now, rep)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s payload %s does not match WebhookEvent: %v", event, body, err)
		}
		if strings.Contains(string(body), sum) || strings.Contains(string(body), "row_count") {
			t.Errorf("%s payload %s shows the file's hash or row count", event, body)
		}
		headers, err := webhook.Headers(db.NewID(db.PrefixWebhookMessage), now, body, webhook.NewSecret(), webhook.NewSecret())
		if err != nil {
			t.Fatal(err)
		}
		var documented []string
		for _, p := range item.Post.Parameters {
			documented = append(documented, p.Value.Name)
			got, ok := headers[p.Value.Name]
			if !ok || p.Value.In != "header" || !p.Value.Required {
				t.Errorf("%s: parameter %s (in %s) is not a required header the worker sends", event, p.Value.Name, p.Value.In)
				continue
			}
			if err := p.Value.Schema.Value.VisitJSON(got, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("%s: header %s = %q does not match its schema: %v", event, p.Value.Name, got, err)
			}
		}
		if len(documented) != len(headers) {
			t.Errorf("%s documents headers %v, the worker sends %v", event, documented, headers)
		}
	}
}
