package jobs

// SetRangeRows makes large scopes cut into ranges of about n rows, until
// the returned function restores the default.
func SetRangeRows(n int64) (restore func()) {
	rangeRowsOverride.Store(n)
	return func() { rangeRowsOverride.Store(0) }
}
