#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 5s).
# Seed corpora live in each package's testdata/fuzz/ and run in plain
# `go test` too; this adds a short coverage-guided search on top.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${FUZZTIME:-5s}
status=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | cut -d' ' -f2); do
		printf '==> fuzz %s %s (%s)\n' "$pkg" "$target" "$fuzztime" >&2
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"; then
			status=1
		fi
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
exit $status
