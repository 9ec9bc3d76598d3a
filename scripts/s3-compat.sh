#!/usr/bin/env bash
# Runs Tally's object-store tests against versitygw, a maintained Apache-2.0 S3 server, to prove
# that Tally needs S3, not MinIO: the storage package's tests, the sweep's (incomplete multipart
# uploads), and one end-to-end report (create → ready → download → SHA-256 matches).
#
#   scripts/s3-compat.sh          build versitygw once (cached), start it, run the tests, stop it
#
# versitygw is built from the Go module proxy into ${XDG_CACHE_HOME:-~/.cache}/tally/bin, like
# the MinIO of scripts/services.sh, and runs its posix backend in a temporary directory on a
# port of its own, with credentials of its own; whatever this script starts it stops on exit.
# PostgreSQL comes from TALLY_TEST_DATABASE_URL (`make test-s3-compat` provides it).
#
# Overrides: TALLY_VGW_PORT (first port tried, default 9190), TALLY_CACHE_DIR.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}"

vgw_module=github.com/versity/versitygw
vgw_version=v1.8.0
vgw_bin="$cache/bin/versitygw-$vgw_version"

host=127.0.0.1
access_key=tally-compat
secret_key=tally-compat-secret-key

log() { printf 's3-compat: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ -n ${TALLY_TEST_DATABASE_URL:-} ]] ||
	die "TALLY_TEST_DATABASE_URL is not set (run 'make test-s3-compat', or eval \"\$(scripts/services.sh up)\" first)"

build() {
	[[ -x $vgw_bin ]] && return 0
	mkdir -p "$cache/bin"
	# One build per machine: another checkout building the same version is waited for.
	exec 9>"$cache/versitygw-build.lock"
	if ! flock -n 9; then
		log "waiting for another build of versitygw ($cache/versitygw-build.lock)"
		flock 9
	fi
	if [[ ! -x $vgw_bin ]]; then
		command -v go >/dev/null || die "go not found: needed to build versitygw"
		log "building versitygw $vgw_version (first time, a few minutes) into $cache/bin"
		local tmp
		tmp=$(mktemp -d "$cache/bin/.versitygw-build.XXXXXX")
		# Outside the repository, so that its go.mod and GOFLAGS cannot interfere; into a
		# temporary directory first, so that a killed build leaves no half-written binary.
		(cd "$cache" && GOFLAGS= GOBIN="$tmp" go install "$vgw_module/cmd/versitygw@$vgw_version") 9>&- >&2 || {
			rm -rf "$tmp"
			die "building versitygw failed"
		}
		mv "$tmp/versitygw" "$vgw_bin"
		rm -rf "$tmp"
		log "built $vgw_bin"
	fi
	exec 9>&-
}

port_in_use() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

build

dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-s3-compat.XXXXXX")
pid=
cleanup() {
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		log "stopping versitygw (pid $pid)"
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

port=${TALLY_VGW_PORT:-9190}
while port_in_use "$port"; do
	port=$((port + 1))
done
mkdir -p "$dir/data"
log "starting versitygw $vgw_version (posix backend in $dir/data) on $host:$port, log $dir/versitygw.log"
ROOT_ACCESS_KEY_ID="$access_key" ROOT_SECRET_ACCESS_KEY="$secret_key" \
	"$vgw_bin" --port "$host:$port" --region us-east-1 --quiet posix "$dir/data" \
	</dev/null >"$dir/versitygw.log" 2>&1 &
pid=$!

# Any HTTP answer means it listens (an anonymous request is refused with 403).
deadline=$((SECONDS + 30))
until curl -sS -o /dev/null --max-time 2 "http://$host:$port/" 2>/dev/null; do
	kill -0 "$pid" 2>/dev/null || {
		cat "$dir/versitygw.log" >&2
		die "versitygw exited"
	}
	((SECONDS < deadline)) || die "versitygw not answering on $host:$port after 30 s"
	sleep 0.2
done

export TALLY_TEST_S3_ENDPOINT="$host:$port"
export TALLY_TEST_S3_ACCESS_KEY_ID="$access_key"
export TALLY_TEST_S3_SECRET_ACCESS_KEY="$secret_key"
export TALLY_TEST_S3_REGION=us-east-1
export TALLY_TEST_S3_USE_TLS=false

cd "$repo"
go=${GO:-go}
log "storage tests against versitygw"
$go test -race -count=1 ${TESTFLAGS:-} ./storage/...
log "sweep of files and incomplete multipart uploads against versitygw"
$go test -race -count=1 ${TESTFLAGS:-} ./jobs/ -run '^TestSweepObjects$'
log "end to end (create, ready, download, SHA-256) against versitygw"
$go test -race -count=1 ${TESTFLAGS:-} ./api/ -run '^TestEndToEndEveryFlagCombination$'
log "versitygw: all passed"
