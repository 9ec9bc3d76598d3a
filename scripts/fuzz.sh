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
		# Go's fuzzer sometimes ends a time-boxed run with a bare "context
		# deadline exceeded" and no failing input (the deadline struck a worker
		# mid-call, typically on a loaded machine): that is no finding, so the
		# target runs once more. A real finding names its input file.
		for try in 1 2; do
			out=$(mktemp)
			if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"; then
				rm -f "$out"
				break
			fi
			if [[ $try == 1 ]] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
				printf '==> %s: deadline struck mid-call with no failing input; running it again\n' "$target" >&2
				rm -f "$out"
				continue
			fi
			rm -f "$out"
			status=1
			break
		done
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
exit $status
