#!/usr/bin/env bash
# Builds a pinned Go program from the Go module proxy into the per-user cache, once, and prints
# its path: the tools Tally runs beside itself (MinIO, versitygw, Helm) are never imported.
#
#   scripts/gotool.sh NAME PACKAGE@VERSION   build $cache/bin/NAME when missing; print its path
#
# Concurrent calls (other checkouts, CI) wait for one build instead of duplicating it. The build
# runs outside any repository, so no go.mod or GOFLAGS interferes, into a temporary GOBIN renamed
# into place, so a killed build never leaves a half-written binary. Progress goes to stderr.
#
# Override: TALLY_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/tally).
set -euo pipefail

[[ $# == 2 && $2 == *@* ]] || {
	echo "usage: $0 NAME PACKAGE@VERSION" >&2
	exit 2
}
name=$1 pkg=$2
cache="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}"
bin="$cache/bin/$name"

log() { printf '%s: %s\n' "$name" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

if [[ ! -x $bin ]]; then
	mkdir -p "$cache/bin"
	exec 9>"$cache/$name-build.lock"
	if ! flock -n 9; then
		log "waiting for another build holding $cache/$name-build.lock"
		flock 9
	fi
	if [[ ! -x $bin ]]; then
		command -v go >/dev/null || die "go not found: needed to build $pkg"
		log "building $pkg (first time, a few minutes) into $cache/bin"
		started=$SECONDS
		tmp=$(mktemp -d "$cache/bin/.$name-build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		(
			cd "$cache"
			# Progress every 30 s: a cold build downloads and compiles hundreds of packages.
			while sleep 30; do log "still building ($((SECONDS - started))s)"; done &
			ticker=$!
			trap 'kill $ticker 2>/dev/null' EXIT
			GOFLAGS= GOBIN="$tmp" go install "$pkg" 9>&- >&2
		) || die "building $pkg failed"
		built=("$tmp"/*)
		[[ ${#built[@]} == 1 && -x ${built[0]} ]] || die "go install $pkg left ${#built[@]} files, want one program"
		mv "${built[0]}" "$bin"
		log "built $bin in $((SECONDS - started))s"
	fi
	exec 9>&-
fi
printf '%s\n' "$bin"
