package report

import "strconv"

// formatAmount appends to dst the exact decimal value of minor units of
// currency, with as many fraction digits as the currency's exponent: 1234 EUR
// is "12.34", -5 EUR is "-0.05", 1234 JPY is "1234", 1234 KWD is "1.234".
// It works on integers only, so every int64, math.MinInt64 included, is exact.
//
// The currency must be one Exponent knows; the writers check that first and
// fail with an UnknownCurrencyError. Given another code, formatAmount writes
// the minor units as they are, without a decimal point: exact, but not in
// the currency's major unit.
func formatAmount(dst []byte, minor int64, currency string) []byte {
	u := uint64(minor)
	if minor < 0 {
		dst = append(dst, '-')
		u = -u // two's complement: also right for math.MinInt64
	}
	exp, _ := Exponent(currency)
	if exp == 0 {
		return strconv.AppendUint(dst, u, 10)
	}
	pow := uint64(100)
	switch exp {
	case 3:
		pow = 1000
	case 4:
		pow = 10000
	}
	dst = strconv.AppendUint(dst, u/pow, 10)
	dst = append(dst, '.')
	frac := u % pow
	// Left-pad the fraction with zeros to exactly exp digits.
	for p := pow / 10; p > 1 && frac < p; p /= 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, frac, 10)
}
