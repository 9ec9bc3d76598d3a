package jobs

// SetRangeRows makes large scopes cut into ranges of about n rows, until
// the returned function restores the default.
func SetRangeRows(n int64) (restore func()) {
	rangeRowsOverride.Store(n)
	return func() { rangeRowsOverride.Store(0) }
}

// SetSpillDir makes large scopes spill to dir (a directory that does not
// exist: no scope can spill), until the returned function restores it.
func SetSpillDir(dir string) (restore func()) {
	spillDir.Store(&dir)
	return func() { spillDir.Store(nil) }
}

// SetSpillMax bounds the temporary file of every large scope to n bytes,
// until the returned function restores the workers' own bound.
func SetSpillMax(n int64) (restore func()) {
	spillMaxOverride.Store(n)
	return func() { spillMaxOverride.Store(0) }
}

// SpilledScopes returns how many scopes were written from a spill so far.
func SpilledScopes() int64 { return spilledScopes.Load() }

// SetScanBlocksMin makes a large scope's scan take n table blocks per
// connection at least, until the returned function restores the default.
func SetScanBlocksMin(n int64) (restore func()) {
	scanBlocksMinOverride.Store(n)
	return func() { scanBlocksMinOverride.Store(0) }
}
