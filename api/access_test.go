package api_test

import (
	"context"
	"testing"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
)

// callers, in the column order of every row of the access matrix.
var callers = []string{"full", "create", "list", "download", "owner", "member", "ownerB", "auditorB",
	"expired", "revoked", "none", "malformed"}

// TestAccessMatrix checks every endpoint × caller × target. Each row states
// the status of every caller; a 401 column is written out like the rest.
//
// Callers: full (auditor with create, list, download on alpha and beta),
// create/list/download (auditor with that one permission on alpha), owner
// (owner-level list and download of org A, no grants), member (org A, no
// permissions at all), ownerB and auditorB (organization B, which owns
// application gamma), expired and revoked tokens, no token, a malformed header.
//
// Targets: alpha (own application), beta (another application of org A),
// gamma (organization B's application), and a ready report in each.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fx := b.fx
	ready := func(role, app, caseID string) string {
		id := decode[api.Report](t, b.create(t, role, app, caseID, "transaction_summary")).ID
		b.makeReady(t, id, []byte("row_type\n"))
		return id
	}
	rA := ready("full", "alpha", fx.caseOK.ID)
	rBeta := ready("full", "beta", fx.caseBeta.ID)
	rB := ready("auditorB", "gamma", fx.caseB.ID)
	// A case every auditor of alpha is assigned to, with a ready report,
	// then revoked; and a draft case nobody is assigned to.
	caseRevoked := b.newCaseOn(t, fx.alpha, "full", "create", "list", "download")
	rRevoked := ready("full", "alpha", caseRevoked.ID)
	if _, err := db.RevokeCase(context.Background(), b.pool, caseRevoked.ID); err != nil {
		t.Fatal(err)
	}
	caseDraftUnassigned := must[*db.Case](t)(db.CreateCase(context.Background(), b.pool, db.CreateCaseParams{
		ApplicationID: fx.alpha.ID, Title: "draft", PeriodStart: fx.caseOK.PeriodStart, PeriodEnd: fx.caseOK.PeriodEnd,
		AccessWindowStart: fx.caseOK.AccessWindowStart, AccessWindowEnd: fx.caseOK.AccessWindowEnd}))

	createBody := func(caseID string) map[string]string {
		return map[string]string{"case_id": caseID, "report_type": "transaction_summary"}
	}
	dl := func(app, id string) string { return "/api/applications/" + app + "/reports/" + id + "/download" }
	mf := func(app, id string) string { return "/api/applications/" + app + "/reports/" + id + "/manifest" }

	type row struct {
		name   string
		method string
		path   string
		body   any
		want   []int // one per caller, in callers order
	}
	rows := []row{
		//                                                                    full create list dl  owner member ownerB audB  exp  rev  none malf
		{"Me", "GET", "/auth/me", nil, []int{200, 200, 200, 200, 200, 200, 200, 200, 401, 401, 401, 401}},

		// An application without any grant of the caller answers 404, like
		// one that does not exist: members cannot enumerate foreign ids.
		{"CreateOwnApp", "POST", "/api/applications/alpha/case-reports", createBody(fx.caseOK.ID),
			[]int{202, 202, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"CreateSiblingApp", "POST", "/api/applications/beta/case-reports", createBody(fx.caseBeta.ID),
			[]int{202, 404, 404, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"CreateOtherOrgApp", "POST", "/api/applications/gamma/case-reports", createBody(fx.caseB.ID),
			[]int{404, 404, 404, 404, 404, 404, 404, 202, 401, 401, 401, 401}},
		{"CreateOtherOrgCaseInOwnApp", "POST", "/api/applications/alpha/case-reports", createBody(fx.caseB.ID),
			[]int{404, 404, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		// Not assigned: 403 before the case's state (draft, revoked) shows.
		{"CreateDraftCaseUnassigned", "POST", "/api/applications/alpha/case-reports", createBody(caseDraftUnassigned.ID),
			[]int{403, 403, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"CreateRevokedCase", "POST", "/api/applications/alpha/case-reports", createBody(caseRevoked.ID),
			[]int{403, 403, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},

		{"ListOwnApp", "GET", "/api/applications/alpha/reports", nil,
			[]int{200, 403, 200, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ListSiblingApp", "GET", "/api/applications/beta/reports", nil,
			[]int{200, 404, 404, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ListOtherOrgApp", "GET", "/api/applications/gamma/reports", nil,
			[]int{404, 404, 404, 404, 404, 404, 404, 200, 401, 401, 401, 401}},
		{"ListUnknownApp", "GET", "/api/applications/nope/reports", nil,
			[]int{404, 404, 404, 404, 404, 404, 404, 404, 401, 401, 401, 401}},

		{"GetOwnReport", "GET", "/api/applications/alpha/reports/" + rA, nil,
			[]int{200, 403, 200, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"GetSiblingReportViaOwnApp", "GET", "/api/applications/alpha/reports/" + rBeta, nil,
			[]int{404, 403, 404, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"GetOtherOrgReportViaOwnApp", "GET", "/api/applications/alpha/reports/" + rB, nil,
			[]int{404, 403, 404, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"GetOtherOrgReport", "GET", "/api/applications/gamma/reports/" + rB, nil,
			[]int{404, 404, 404, 404, 404, 404, 404, 200, 401, 401, 401, 401}},

		{"DownloadOwnReport", "GET", dl("alpha", rA), nil,
			[]int{200, 403, 403, 200, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"DownloadSiblingReport", "GET", dl("beta", rBeta), nil,
			[]int{200, 404, 404, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"DownloadSiblingReportViaOwnApp", "GET", dl("alpha", rBeta), nil,
			[]int{404, 403, 403, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"DownloadOtherOrgReportViaOwnApp", "GET", dl("alpha", rB), nil,
			[]int{404, 403, 403, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"DownloadOtherOrgReport", "GET", dl("gamma", rB), nil,
			[]int{404, 404, 404, 404, 404, 404, 404, 200, 401, 401, 401, 401}},
		{"DownloadUnknownReport", "GET", dl("alpha", "rpt_01aaaaaaaaaaaaaaaaaaaaaaaa"), nil,
			[]int{404, 403, 403, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		// Revoking a case withdraws its reports from auditors, not owners.
		{"DownloadRevokedCaseReport", "GET", dl("alpha", rRevoked), nil,
			[]int{403, 403, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},

		{"ManifestOwnReport", "GET", mf("alpha", rA), nil,
			[]int{200, 403, 403, 200, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ManifestSiblingReport", "GET", mf("beta", rBeta), nil,
			[]int{200, 404, 404, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ManifestSiblingReportViaOwnApp", "GET", mf("alpha", rBeta), nil,
			[]int{404, 403, 403, 404, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ManifestOtherOrgReport", "GET", mf("gamma", rB), nil,
			[]int{404, 404, 404, 404, 404, 404, 404, 200, 401, 401, 401, 401}},
		{"ManifestRevokedCaseReport", "GET", mf("alpha", rRevoked), nil,
			[]int{403, 403, 403, 403, 404, 404, 404, 404, 401, 401, 401, 401}},
		{"ManifestOrgOwnReport", "GET", "/api/reports/" + rA + "/manifest", nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
		{"ManifestOrgOtherOrgReport", "GET", "/api/reports/" + rB + "/manifest", nil,
			[]int{403, 403, 403, 403, 404, 403, 200, 403, 401, 401, 401, 401}},
		{"SigningKeys", "GET", "/.well-known/tally-signing-keys", nil,
			[]int{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},

		{"ListOrg", "GET", "/api/reports", nil,
			[]int{403, 403, 403, 403, 200, 403, 200, 403, 401, 401, 401, 401}},
		{"GetOrgOwnReport", "GET", "/api/reports/" + rA, nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
		{"GetOrgSiblingReport", "GET", "/api/reports/" + rBeta, nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
		{"GetOrgOtherOrgReport", "GET", "/api/reports/" + rB, nil,
			[]int{403, 403, 403, 403, 404, 403, 200, 403, 401, 401, 401, 401}},
		{"DownloadOrgOwnReport", "GET", "/api/reports/" + rA + "/download", nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
		{"DownloadOrgSiblingReport", "GET", "/api/reports/" + rBeta + "/download", nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
		{"DownloadOrgOtherOrgReport", "GET", "/api/reports/" + rB + "/download", nil,
			[]int{403, 403, 403, 403, 404, 403, 200, 403, 401, 401, 401, 401}},
		{"DownloadOrgRevokedCaseReport", "GET", "/api/reports/" + rRevoked + "/download", nil,
			[]int{403, 403, 403, 403, 200, 403, 404, 403, 401, 401, 401, 401}},
	}
	for _, r := range rows {
		if len(r.want) != len(callers) {
			t.Fatalf("row %s has %d columns, want %d", r.name, len(r.want), len(callers))
		}
		for i, caller := range callers {
			t.Run(r.name+"/"+caller, func(t *testing.T) {
				var opts []reqOpt
				token := fx.tokens[caller]
				switch caller {
				case "none":
					token = ""
				case "malformed":
					token = ""
					opts = append(opts, withHeader("Authorization", "Bearer "+fx.tokens["full"]+" extra"))
				}
				res := b.do(t, r.method, r.path, token, r.body, opts...)
				if res.Code != r.want[i] {
					t.Fatalf("%s %s as %s: got %d %s, want %d", r.method, r.path, caller, res.Code, res.Body, r.want[i])
				}
				if res.Code >= 400 {
					_ = res.errorCode(t) // every error is the JSON error shape
				}
			})
		}
	}
}
