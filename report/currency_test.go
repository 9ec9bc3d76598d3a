package report_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/text/currency"

	"github.com/tally-compliance/tally/report"
)

// cldrDigits are the currencies whose CLDR display digits, as
// golang.org/x/text/currency's Standard rounding gives them, differ from
// their ISO 4217 minor unit: why Exponent has a table of its own.
var cldrDigits = map[string]int{
	"AFN": 0, "ALL": 0, "AMD": 0, "COP": 0, "GYD": 0, "IDR": 0, "IQD": 0, "IRR": 0, "KPW": 0, "LAK": 0,
	"LBP": 0, "MGA": 0, "MMK": 0, "MNT": 0, "MRO": 0, "MUR": 0, "PKR": 0, "RSD": 0, "SLL": 0, "SOS": 0,
	"SYP": 0, "TZS": 0, "UZS": 0, "YER": 0,
}

// TestExponentAgainstCLDR checks Exponent against golang.org/x/text's
// currency data: every currency CLDR has in use as legal tender is known,
// and the exponents agree except where CLDR's display digits are not ISO
// 4217's minor unit (cldrDigits, spelled out so that a change on either
// side shows here).
func TestExponentAgainstCLDR(t *testing.T) {
	t.Parallel()
	inUse := map[string]bool{}
	for it := currency.Query(); it.Next(); {
		inUse[it.Unit().String()] = true
	}
	if len(inUse) < 150 {
		t.Fatalf("x/text lists %d currencies in use, want about 155", len(inUse))
	}
	differ := map[string]int{}
	for _, code := range slices.Sorted(maps.Keys(inUse)) {
		exp, ok := report.Exponent(code)
		if !ok {
			t.Errorf("Exponent(%s) unknown, but CLDR has it in use", code)
			continue
		}
		u, err := currency.ParseISO(code)
		if err != nil {
			t.Fatalf("ParseISO(%s): %v", code, err)
		}
		if scale, _ := currency.Standard.Rounding(u); scale != exp {
			differ[code] = scale
		}
	}
	if diff := cmp.Diff(cldrDigits, differ); diff != "" {
		t.Errorf("currencies whose CLDR digits differ from Exponent changed (-want +got):\n%s", diff)
	}
}
