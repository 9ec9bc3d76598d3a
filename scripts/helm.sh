#!/usr/bin/env bash
# Builds the pinned Helm from the Go module proxy into the per-user cache (once; a few minutes)
# and prints its path. Concurrent calls wait for one build instead of duplicating it.
#
#   scripts/helm.sh          build when missing, print the binary's path on stdout
#
# Override: TALLY_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/tally).
set -euo pipefail

cache="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}"
helm_module=helm.sh/helm/v3/cmd/helm
helm_version=v3.22.0
helm_bin="$cache/bin/helm-$helm_version"

log() { printf 'helm: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

if [[ ! -x $helm_bin ]]; then
	mkdir -p "$cache/bin"
	exec 9>"$cache/helm-build.lock"
	if ! flock -n 9; then
		log "waiting for another build holding $cache/helm-build.lock"
		flock 9
	fi
	if [[ ! -x $helm_bin ]]; then
		command -v go >/dev/null || die "go not found: needed to build Helm"
		log "building Helm $helm_version (first time, a few minutes) into $cache/bin"
		build_started=$SECONDS
		tmp=$(mktemp -d "$cache/helm-build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# Run outside the repository so its go.mod and any GOFLAGS cannot interfere; install into
		# a temporary GOBIN and rename, so a killed build never leaves a half-written binary.
		(
			cd "$cache"
			# Progress every 30 s: a cold build downloads and compiles a few hundred packages.
			while sleep 30; do log "still building ($((SECONDS - build_started))s)"; done &
			ticker=$!
			trap 'kill $ticker 2>/dev/null' EXIT
			GOFLAGS= GOBIN="$tmp" go install "$helm_module@$helm_version" 9>&- >&2
		) || die "building Helm failed"
		mv "$tmp/helm" "$helm_bin"
		log "built $helm_bin in $((SECONDS - build_started))s"
	fi
	exec 9>&-
fi
printf '%s\n' "$helm_bin"
