package report_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/report"
)

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor    int64
		currency string
		want     string
	}{
		{1234, "EUR", "12.34"},
		{-1234, "EUR", "-12.34"},
		{-5, "EUR", "-0.05"},
		{5, "USD", "0.05"},
		{0, "EUR", "0.00"},
		{100, "EUR", "1.00"},
		{1234, "XXX", "1234"}, // no minor unit: the minor units as they are, no guessed decimals
		{1234, "JPY", "1234"},
		{-1234, "JPY", "-1234"},
		{0, "JPY", "0"},
		{7, "KRW", "7"},
		{1234, "KWD", "1.234"},
		{-5, "KWD", "-0.005"},
		{0, "BHD", "0.000"},
		{1000, "TND", "1.000"},
		{12345, "CLF", "1.2345"},
		{-1, "UYW", "-0.0001"},
		{math.MaxInt64, "EUR", "92233720368547758.07"},
		{math.MinInt64, "EUR", "-92233720368547758.08"},
		{math.MinInt64, "JPY", "-9223372036854775808"},
		{math.MinInt64, "KWD", "-9223372036854775.808"},
		{math.MinInt64, "CLF", "-922337203685477.5808"},
	}
	for _, tt := range tests {
		got := string(report.FormatAmount([]byte("x"), tt.minor, tt.currency))
		if got != "x"+tt.want {
			t.Errorf("FormatAmount(%d, %s) = %q, want %q", tt.minor, tt.currency, got[1:], tt.want)
		}
	}
}

func TestExponentEveryClass(t *testing.T) {
	t.Parallel()
	classes := map[int][]string{
		0: {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"},
		2: {"EUR", "USD", "GBP", "CHF"},
		3: {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"},
		4: {"CLF", "UYW"},
	}
	for want, currencies := range classes {
		for _, c := range currencies {
			if got, ok := report.Exponent(c); got != want || !ok {
				t.Errorf("Exponent(%s) = %d, %v, want %d, true", c, got, ok, want)
			}
		}
	}
}

func TestExponentUnknownCodes(t *testing.T) {
	t.Parallel()
	for _, c := range []string{
		"ABC", "EUX", "eur", "EURO", "", // not ISO 4217
		"XAU", "XAG", "XDR", "XTS", "XXX", "XBA", // ISO 4217 without a minor unit
		"DEM", "FRF", "ZWD", // withdrawn long before 2015
	} {
		if exp, ok := report.Exponent(c); ok {
			t.Errorf("Exponent(%q) = %d, true, want unknown", c, exp)
		}
	}
}

func TestSummaryWriterUnknownCurrencyFailsBeforeItsAmounts(t *testing.T) {
	t.Parallel()
	rows := []report.Transaction{
		{ContractID: "A", Currency: "EUR", Kind: "payment", OccurredAt: t0, ExternalID: "x", AmountMinor: 100},
		{ContractID: "A", Currency: "ABC", Kind: "payment", OccurredAt: t0, ExternalID: "y", AmountMinor: 12345},
	}
	for _, lineItems := range []bool{false, true} {
		got, _, err := writeSummary(t, report.SummaryOpts{PseudonymKey: []byte("r"), LineItems: lineItems}, rows)
		var uc *report.UnknownCurrencyError
		if !errors.As(err, &uc) || uc.Currency != "ABC" {
			t.Errorf("line_items=%v: err = %v, want an UnknownCurrencyError for ABC", lineItems, err)
		}
		if strings.Contains(got, "ABC") || strings.Contains(got, "123") {
			t.Errorf("line_items=%v: wrote an amount of the unknown currency:\n%s", lineItems, got)
		}
	}
	var b bytes.Buffer
	w := report.NewSummaryWriter(&b, report.SummaryOpts{PseudonymKey: []byte("r")})
	err := w.WriteGroup(&report.Group{ContractID: "A", Currency: "XAU", Kind: "payment", Count: 1, SumMinor: 5})
	var uc *report.UnknownCurrencyError
	if !errors.As(err, &uc) || uc.Currency != "XAU" {
		t.Errorf("WriteGroup: err = %v, want an UnknownCurrencyError for XAU", err)
	}
	if _, err := w.Close(); !errors.As(err, &uc) {
		t.Errorf("Close after the failure: err = %v, want the UnknownCurrencyError", err)
	}
}

// csvLine is what encoding/csv writes for one record, the reference our
// hand-written encoder must equal.
func csvLine(t testing.TB, fields ...string) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.Write(fields); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return b.String()
}

func TestAppendFieldMatchesEncodingCSV(t *testing.T) {
	t.Parallel()
	fixed := []string{"", "a", "a,b", `a"b`, `"`, "a\nb", "a\rb", "\r\n", " lead", "\tlead", "trail ",
		`\.`, `\.x`, "\u00a0nbsp", "\u2003em", "é", "\xff\xfe", "==", "x\"\"y", ","}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", ",", `"`, "\r", "\n", " ", "\t", "=", "-", "\\", ".", "é", "\u00a0", "\u3000", "'"}
	for i := 0; i < 5000; i++ {
		var b strings.Builder
		for n := r.IntN(6); n > 0; n-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		fixed = append(fixed, b.String())
	}
	for _, f := range fixed {
		got := string(report.AppendField(nil, f)) + "\n"
		if want := csvLine(t, f); got != want {
			t.Fatalf("AppendField(%q) = %q, want %q (encoding/csv)", f, got, want)
		}
	}
}

func FuzzAppendField(f *testing.F) {
	for _, s := range []string{"", "a,b", `"`, " x", `\.`, "\u00a0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(report.AppendField(nil, s)) + "\n"
		if want := csvLine(t, s); got != want {
			t.Fatalf("AppendField(%q) = %q, want %q", s, got, want)
		}
		// The guarded field is the CSV encoding of "'"+s when s needs it.
		guarded := string(report.AppendTextField(nil, s)) + "\n"
		want := csvLine(t, s)
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			want = csvLine(t, "'"+s)
		}
		if guarded != want {
			t.Fatalf("AppendTextField(%q) = %q, want %q", s, guarded, want)
		}
	})
}

func TestAppendTextFieldGuardsFormulas(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"=SUM(A1)", "'=SUM(A1)"},
		{"+1", "'+1"},
		{"-1", "'-1"},
		{"@cmd", "'@cmd"},
		{"\tx", "'\tx"},
		{"\rx", "\"'\rx\""},
		{"=a,b", `"'=a,b"`},
		{`=HYPERLINK("x")`, `"'=HYPERLINK(""x"")"`},
		{"a=b", "a=b"},
		{" =x", `" =x"`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(report.AppendTextField(nil, tt.in)); got != tt.want {
			t.Errorf("AppendTextField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// pseudonym is computed here independently of the package, from a report's
// pseudonym key.
func pseudonym(key []byte, cp string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(cp))
	return "cp_" + hex.EncodeToString(m.Sum(nil))[:12]
}

var (
	t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	t1 = time.Date(2025, 3, 2, 11, 30, 0, 123456000, time.FixedZone("CET", 3600))
)

func sampleRows() []report.Transaction {
	return []report.Transaction{
		{ContractID: "C-1", Currency: "EUR", Kind: "payment", OccurredAt: t0, ExternalID: "e1", Counterparty: "Acme, Inc.", Description: `say "hi"`, AmountMinor: 1234},
		{ContractID: "C-1", Currency: "EUR", Kind: "payment", OccurredAt: t1, ExternalID: "e2", Counterparty: "=cmd", Description: "", AmountMinor: -5},
		{ContractID: "C-1", Currency: "EUR", Kind: "refund", OccurredAt: t1, ExternalID: "-e3", Counterparty: "", Description: "line1\nline2", AmountMinor: -100},
		{ContractID: "C-1", Currency: "JPY", Kind: "payment", OccurredAt: t0, ExternalID: "e4", Counterparty: "Acme, Inc.", Description: "yen", AmountMinor: 5000},
		{ContractID: "C-2", Currency: "EUR", Kind: "fee", OccurredAt: t0, ExternalID: "e5", Counterparty: "Bob", Description: "fee", AmountMinor: 1},
		{ContractID: "C-2", Currency: "KWD", Kind: "payment", OccurredAt: t0, ExternalID: "e6", Counterparty: "Bob", Description: "d", AmountMinor: 1234},
	}
}

func writeSummary(t testing.TB, opts report.SummaryOpts, rows []report.Transaction) (string, report.Summary, error) {
	var b bytes.Buffer
	w := report.NewSummaryWriter(&b, opts)
	for i := range rows {
		if err := w.WriteTransaction(&rows[i]); err != nil {
			return b.String(), report.Summary{}, err
		}
	}
	sum, err := w.Close()
	return b.String(), sum, err
}

func TestSummaryWriterExplicitBytes(t *testing.T) {
	t.Parallel()
	rid := []byte("the pseudonym key of rpt_01jtest")
	acme, eq, bob := pseudonym(rid, "Acme, Inc."), pseudonym(rid, "=cmd"), pseudonym(rid, "Bob")
	subtotalsAndTotals := "" +
		"subtotal,C-1,EUR,payment,,,,,2,12.29\n" +
		"subtotal,C-1,EUR,refund,,,,,1,-1.00\n" +
		"subtotal,C-1,JPY,payment,,,,,1,5000\n" +
		"subtotal,C-2,EUR,fee,,,,,1,0.01\n" +
		"subtotal,C-2,KWD,payment,,,,,1,1.234\n" +
		"total,,EUR,,,,,,4,11.30\n" +
		"total,,JPY,,,,,,1,5000\n" +
		"total,,KWD,,,,,,1,1.234\n"
	tests := []struct {
		name string
		opts report.SummaryOpts
		want string
	}{
		{
			name: "NoLineItemsSubtotalsAndTotalsOnly",
			opts: report.SummaryOpts{PseudonymKey: rid},
			want: report.SummaryHeader + subtotalsAndTotals,
		},
		{
			name: "NoLineItemsIgnoresOtherFlags",
			opts: report.SummaryOpts{PseudonymKey: rid, CounterpartyNames: true, Descriptions: true},
			want: report.SummaryHeader + subtotalsAndTotals,
		},
		{
			name: "LineItemsPseudonymsNoDescriptions",
			opts: report.SummaryOpts{PseudonymKey: rid, LineItems: true},
			want: report.SummaryHeader +
				"transaction,C-1,EUR,payment,2025-03-01T10:00:00Z,e1," + acme + ",,,12.34\n" +
				"transaction,C-1,EUR,payment,2025-03-02T10:30:00.123456Z,e2," + eq + ",,,-0.05\n" +
				"subtotal,C-1,EUR,payment,,,,,2,12.29\n" +
				"transaction,C-1,EUR,refund,2025-03-02T10:30:00.123456Z,'-e3,,,,-1.00\n" +
				"subtotal,C-1,EUR,refund,,,,,1,-1.00\n" +
				"transaction,C-1,JPY,payment,2025-03-01T10:00:00Z,e4," + acme + ",,,5000\n" +
				"subtotal,C-1,JPY,payment,,,,,1,5000\n" +
				"transaction,C-2,EUR,fee,2025-03-01T10:00:00Z,e5," + bob + ",,,0.01\n" +
				"subtotal,C-2,EUR,fee,,,,,1,0.01\n" +
				"transaction,C-2,KWD,payment,2025-03-01T10:00:00Z,e6," + bob + ",,,1.234\n" +
				"subtotal,C-2,KWD,payment,,,,,1,1.234\n" +
				"total,,EUR,,,,,,4,11.30\n" +
				"total,,JPY,,,,,,1,5000\n" +
				"total,,KWD,,,,,,1,1.234\n",
		},
		{
			name: "LineItemsNamesAndDescriptionsEscaped",
			opts: report.SummaryOpts{PseudonymKey: rid, LineItems: true, CounterpartyNames: true, Descriptions: true},
			want: report.SummaryHeader +
				"transaction,C-1,EUR,payment,2025-03-01T10:00:00Z,e1,\"Acme, Inc.\",\"say \"\"hi\"\"\",,12.34\n" +
				"transaction,C-1,EUR,payment,2025-03-02T10:30:00.123456Z,e2,'=cmd,,,-0.05\n" +
				"subtotal,C-1,EUR,payment,,,,,2,12.29\n" +
				"transaction,C-1,EUR,refund,2025-03-02T10:30:00.123456Z,'-e3,,\"line1\nline2\",,-1.00\n" +
				"subtotal,C-1,EUR,refund,,,,,1,-1.00\n" +
				"transaction,C-1,JPY,payment,2025-03-01T10:00:00Z,e4,\"Acme, Inc.\",yen,,5000\n" +
				"subtotal,C-1,JPY,payment,,,,,1,5000\n" +
				"transaction,C-2,EUR,fee,2025-03-01T10:00:00Z,e5,Bob,fee,,0.01\n" +
				"subtotal,C-2,EUR,fee,,,,,1,0.01\n" +
				"transaction,C-2,KWD,payment,2025-03-01T10:00:00Z,e6,Bob,d,,1.234\n" +
				"subtotal,C-2,KWD,payment,,,,,1,1.234\n" +
				"total,,EUR,,,,,,4,11.30\n" +
				"total,,JPY,,,,,,1,5000\n" +
				"total,,KWD,,,,,,1,1.234\n",
		},
	}
	wantSummary := report.Summary{RowCount: 6, Totals: map[string]report.CurrencyTotal{
		"EUR": {Count: 4, Amount: "11.30"}, "JPY": {Count: 1, Amount: "5000"}, "KWD": {Count: 1, Amount: "1.234"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, sum, err := writeSummary(t, tt.opts, sampleRows())
			if err != nil {
				t.Fatalf("writing: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("file mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantSummary, sum); diff != "" {
				t.Errorf("summary mismatch (-want +got):\n%s", diff)
			}
			// Every line parses back as 10 CSV fields.
			recs, err := csv.NewReader(strings.NewReader(got)).ReadAll()
			if err != nil {
				t.Fatalf("file does not parse as CSV: %v", err)
			}
			for _, r := range recs {
				if len(r) != 10 {
					t.Errorf("record %q has %d fields, want 10", r, len(r))
				}
			}
		})
	}
}

func TestSummaryWriterEmptyScopeIsHeaderOnly(t *testing.T) {
	t.Parallel()
	for _, lineItems := range []bool{false, true} {
		got, sum, err := writeSummary(t, report.SummaryOpts{PseudonymKey: []byte("r"), LineItems: lineItems}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != report.SummaryHeader {
			t.Errorf("line_items=%v: got %q, want the header only", lineItems, got)
		}
		if diff := cmp.Diff(report.Summary{RowCount: 0, Totals: map[string]report.CurrencyTotal{}}, sum); diff != "" {
			t.Errorf("summary mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestPseudonymsStablePerReportAndDistinctAcrossReports(t *testing.T) {
	t.Parallel()
	master := []byte("a master key of at least 32 bytes, for tests")
	keys, err := report.NewPseudonymKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	keyA, err := keys.ReportKey(keys.CurrentID(), "rpt_a")
	if err != nil {
		t.Fatal(err)
	}
	keyB, _ := keys.ReportKey(keys.CurrentID(), "rpt_b")
	// The report key is HKDF-SHA256(master, no salt, info = report id).
	if want, _ := hkdf.Key(sha256.New, master, nil, "rpt_a", 32); !bytes.Equal(keyA, want) {
		t.Errorf("ReportKey = %x, want %x", keyA, want)
	}
	if got, want := report.Pseudonym(keyA, "Acme"), pseudonym(keyA, "Acme"); got != want {
		t.Errorf("Pseudonym = %q, want %q", got, want)
	}
	if report.Pseudonym(keyA, "Acme") == report.Pseudonym(keyB, "Acme") {
		t.Error("same pseudonym in two reports, want them unrelated")
	}
	// Whoever knows the report id but not the master key cannot match a name.
	if report.Pseudonym(keyA, "Acme") == pseudonym([]byte("rpt_a"), "Acme") {
		t.Error("pseudonym keyed by the report id alone")
	}
	if got := report.Pseudonym(keyA, ""); got != "" {
		t.Errorf("empty counterparty became %q, want empty", got)
	}
	if got := report.Pseudonym(keyA, "Acme"); len(got) != 15 || !strings.HasPrefix(got, "cp_") {
		t.Errorf("pseudonym %q, want cp_ and 12 hex digits", got)
	}
}

func TestPseudonymKeysRotation(t *testing.T) {
	t.Parallel()
	old, cur := []byte("the retired master key, 32 bytes or more"), []byte("the current master key, 32 bytes or more")
	before, err := report.NewPseudonymKeys(old)
	if err != nil {
		t.Fatal(err)
	}
	after, err := report.NewPseudonymKeys(cur, old)
	if err != nil {
		t.Fatal(err)
	}
	if before.CurrentID() == after.CurrentID() || after.CurrentID() != report.PseudonymKeyID(cur) {
		t.Fatalf("ids %s, %s: want the new key current", before.CurrentID(), after.CurrentID())
	}
	k1, _ := before.ReportKey(before.CurrentID(), "rpt_x")
	k2, err := after.ReportKey(before.CurrentID(), "rpt_x")
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("retired key after rotation: %x, %v; want %x", k2, err, k1)
	}
	if _, err := before.ReportKey(after.CurrentID(), "rpt_x"); !errors.Is(err, report.ErrUnknownPseudonymKey) {
		t.Errorf("unknown key id: err = %v, want ErrUnknownPseudonymKey", err)
	}
	if _, err := report.NewPseudonymKeys([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := report.NewPseudonymKeys(cur, []byte("short")); err == nil {
		t.Error("a 5-byte retired key was accepted")
	}
}

func TestSummaryWriterPseudonymsNeedAKey(t *testing.T) {
	t.Parallel()
	rows := sampleRows()
	_, _, err := writeSummary(t, report.SummaryOpts{LineItems: true}, rows)
	if err == nil {
		t.Fatal("pseudonyms written without a key")
	}
	if _, _, err := writeSummary(t, report.SummaryOpts{LineItems: true, CounterpartyNames: true}, rows); err != nil {
		t.Fatalf("names need no key: %v", err)
	}
}

func TestSummaryWriterOverflow(t *testing.T) {
	t.Parallel()
	row := func(contract, cur string, amount int64) report.Transaction {
		return report.Transaction{ContractID: contract, Currency: cur, Kind: "payment", OccurredAt: t0, ExternalID: "x", AmountMinor: amount}
	}
	tests := []struct {
		name    string
		rows    []report.Transaction
		wantErr bool
	}{
		{"SubtotalOverflowFails", []report.Transaction{row("A", "EUR", math.MaxInt64), row("A", "EUR", 1)}, true},
		{"NegativeSubtotalOverflowFails", []report.Transaction{row("A", "EUR", math.MinInt64), row("A", "EUR", -1)}, true},
		{"TotalOverflowAcrossContractsFails", []report.Transaction{row("A", "EUR", math.MaxInt64), row("B", "EUR", 1)}, true},
		{"IntermediateOverflowThatComesBackSucceeds", []report.Transaction{row("A", "EUR", math.MaxInt64), row("A", "EUR", 10), row("A", "EUR", -20)}, false},
		{"ExtremesInDifferentCurrenciesSucceed", []report.Transaction{row("A", "EUR", math.MaxInt64), row("A", "USD", math.MinInt64)}, false},
	}
	for _, tt := range tests {
		for _, lineItems := range []bool{false, true} {
			_, _, err := writeSummary(t, report.SummaryOpts{PseudonymKey: []byte("r"), LineItems: lineItems}, tt.rows)
			if got := errors.Is(err, report.ErrAmountOverflow); got != tt.wantErr {
				t.Errorf("%s (line_items=%v): err = %v, want overflow %v", tt.name, lineItems, err, tt.wantErr)
			}
		}
	}
}

// randomRows returns n rows in report order.
func randomRows(r *rand.Rand, n int) []report.Transaction {
	contracts := []string{"A", "B,1", "=C", "D"}
	currencies := []string{"EUR", "JPY", "KWD", "USD"}
	kinds := []string{"fee", "payment", "refund"}
	var rows []report.Transaction
	for len(rows) < n {
		c, cur, k := contracts[r.IntN(len(contracts))], currencies[r.IntN(len(currencies))], kinds[r.IntN(len(kinds))]
		for m := 1 + r.IntN(5); m > 0; m-- {
			rows = append(rows, report.Transaction{ContractID: c, Currency: cur, Kind: k, OccurredAt: t0,
				ExternalID: "e", Counterparty: "cp", AmountMinor: r.Int64N(2_000_000) - 1_000_000})
		}
	}
	// Sort into report order, keeping each group's rows together.
	key := func(t report.Transaction) string { return t.ContractID + "\x00" + t.Currency + "\x00" + t.Kind }
	sorted := make([]report.Transaction, len(rows))
	copy(sorted, rows)
	slices.SortStableFunc(sorted, func(a, b report.Transaction) int { return strings.Compare(key(a), key(b)) })
	return sorted
}

func TestSummaryWriterGroupsGiveSameBytesAsRows(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 50; trial++ {
		rows := randomRows(r, r.IntN(200))
		want, wantSum, err := writeSummary(t, report.SummaryOpts{PseudonymKey: []byte("r")}, rows)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		w := report.NewSummaryWriter(&b, report.SummaryOpts{PseudonymKey: []byte("r")})
		for i := 0; i < len(rows); {
			g := report.Group{ContractID: rows[i].ContractID, Currency: rows[i].Currency, Kind: rows[i].Kind}
			for ; i < len(rows) && rows[i].ContractID == g.ContractID && rows[i].Currency == g.Currency && rows[i].Kind == g.Kind; i++ {
				g.Count++
				g.SumMinor += rows[i].AmountMinor
			}
			if err := w.WriteGroup(&g); err != nil {
				t.Fatal(err)
			}
		}
		gotSum, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, b.String()); diff != "" {
			t.Fatalf("groups vs rows mismatch (-rows +groups):\n%s", diff)
		}
		if diff := cmp.Diff(wantSum, gotSum); diff != "" {
			t.Fatalf("summary mismatch (-rows +groups):\n%s", diff)
		}
	}
}

func TestSummaryWriterWriteGroupWithLineItemsFails(t *testing.T) {
	t.Parallel()
	w := report.NewSummaryWriter(&bytes.Buffer{}, report.SummaryOpts{LineItems: true, PseudonymKey: []byte("k")})
	if err := w.WriteGroup(&report.Group{ContractID: "A", Currency: "EUR", Kind: "fee", Count: 1}); err == nil {
		t.Fatal("WriteGroup with line items succeeded, want an error")
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestSummaryWriterReportsWriteErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	w := report.NewSummaryWriter(failingWriter{boom}, report.SummaryOpts{LineItems: true, PseudonymKey: []byte("k")})
	rows := sampleRows()
	for i := range rows {
		_ = w.WriteTransaction(&rows[i])
	}
	if _, err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close err = %v, want %v", err, boom)
	}
}

func TestActivityLogWriter(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := report.NewActivityLogWriter(&b)
	events := []report.Event{
		{OccurredAt: t0, Kind: "report.created", ReportID: "rpt_1", ReportType: "transaction_summary",
			ActorID: "usr_1", ActorEmail: "ann@example.com", ActorName: "Ann, Auditor", ClientIP: "203.0.113.7", UserAgent: "portal/1.0 (x, y)", Hash: "ab01"},
		{OccurredAt: t1, Kind: "report.generated", ReportID: "rpt_1", ReportType: "transaction_summary"},
		{OccurredAt: t1, Kind: "report.downloaded", ReportID: "rpt_1", ReportType: "transaction_summary",
			ActorID: "usr_2", ActorEmail: "bo@example.com", ActorName: "=Bo", ClientIP: "2001:db8::1", UserAgent: "=curl"},
	}
	for i := range events {
		if err := w.WriteEvent(&events[i]); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := "occurred_at,event,report_id,report_type,actor_id,actor_email,actor_name,client_ip,user_agent,hash\n" +
		"2025-03-01T10:00:00Z,report.created,rpt_1,transaction_summary,usr_1,ann@example.com,\"Ann, Auditor\",203.0.113.7,\"portal/1.0 (x, y)\",ab01\n" +
		"2025-03-02T10:30:00.123456Z,report.generated,rpt_1,transaction_summary,,system,,,,\n" +
		"2025-03-02T10:30:00.123456Z,report.downloaded,rpt_1,transaction_summary,usr_2,bo@example.com,'=Bo,2001:db8::1,'=curl,\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("file mismatch (-want +got):\n%s", diff)
	}
	if sum.RowCount != 3 {
		t.Errorf("RowCount = %d, want 3", sum.RowCount)
	}
}

func TestActivityLogWriterEmptyIsHeaderOnly(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	sum, err := report.NewActivityLogWriter(&b).Close()
	if err != nil || b.String() != report.ActivityLogHeader || sum.RowCount != 0 {
		t.Fatalf("got %q, %+v, %v; want the header only", b.String(), sum, err)
	}
}
