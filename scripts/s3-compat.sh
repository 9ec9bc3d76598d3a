#!/usr/bin/env bash
# Runs Tally's object-store tests against S3 servers other than the shared test MinIO:
#
# 1. versitygw, a maintained Apache-2.0 S3 server, to prove that Tally needs S3, not MinIO: the
#    storage package's tests, the sweep's (incomplete multipart uploads), and one end-to-end
#    report (create → ready → download → SHA-256 matches).
# 2. A MinIO of its own with a KMS key (MinIO encrypts only with a KMS), to prove server-side
#    encryption reaches every write: the storage tests with SSE-S3, and with SSE-KMS.
#
#   scripts/s3-compat.sh          build versitygw once (cached), start both, run the tests, stop them
#
# versitygw is built from the Go module proxy into ${XDG_CACHE_HOME:-~/.cache}/tally/bin, like
# the MinIO of scripts/services.sh (whose binary phase 2 runs). Each server runs in a temporary
# directory on a port of its own, with credentials of its own; whatever this script starts it
# stops on exit. PostgreSQL comes from TALLY_TEST_DATABASE_URL (`make test-s3-compat` provides it).
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

build() { "$repo/scripts/gotool.sh" "versitygw-$vgw_version" "$vgw_module/cmd/versitygw@$vgw_version" >/dev/null; }

port_in_use() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# start NAME PORT COMMAND…: runs a server in the background, logging to $dir/NAME.log, and
# waits until it answers HTTP on PORT (any status: an anonymous request is refused with 403).
pids=()
start() {
	local name=$1 port=$2
	shift 2
	"$@" </dev/null >"$dir/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	local deadline=$((SECONDS + 60))
	until curl -sS -o /dev/null --max-time 2 "http://$host:$port/" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || {
			cat "$dir/$name.log" >&2
			die "$name exited"
		}
		((SECONDS < deadline)) || die "$name not answering on $host:$port after 60 s"
		sleep 0.2
	done
}

free_port() { # first free port from $1
	local port=$1
	while port_in_use "$port"; do
		port=$((port + 1))
	done
	printf '%s\n' "$port"
}

use_store() { # endpoint: the test harness's object store from now on
	export TALLY_TEST_S3_ENDPOINT="$1"
	export TALLY_TEST_S3_ACCESS_KEY_ID="$access_key"
	export TALLY_TEST_S3_SECRET_ACCESS_KEY="$secret_key"
	export TALLY_TEST_S3_REGION=us-east-1
	export TALLY_TEST_S3_USE_TLS=false
	unset TALLY_TEST_S3_SSE TALLY_TEST_S3_SSE_KMS_KEY_ID
}

minio_bin="$cache/bin/minio"
[[ -x $minio_bin ]] || die "no MinIO binary at $minio_bin: run scripts/services.sh up once (it builds it)"
build

dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-s3-compat.XXXXXX")
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$dir"
}
trap cleanup EXIT

cd "$repo"
go=${GO:-go}

# --- 1. versitygw -------------------------------------------------------------------------------

port=$(free_port "${TALLY_VGW_PORT:-9190}")
mkdir -p "$dir/vgw"
log "starting versitygw $vgw_version (posix backend in $dir/vgw) on $host:$port"
start versitygw "$port" env ROOT_ACCESS_KEY_ID="$access_key" ROOT_SECRET_ACCESS_KEY="$secret_key" \
	"$vgw_bin" --port "$host:$port" --region us-east-1 --quiet posix "$dir/vgw"
use_store "$host:$port"
log "versitygw: storage tests"
$go test -race -count=1 ${TESTFLAGS:-} ./storage/...
log "versitygw: sweep of files and incomplete multipart uploads"
$go test -race -count=1 ${TESTFLAGS:-} ./jobs/ -run '^TestSweepObjects$'
log "versitygw: end to end (create, ready, download, SHA-256)"
$go test -race -count=1 ${TESTFLAGS:-} ./api/ -run '^TestEndToEndEveryFlagCombination$'

# --- 2. MinIO with a KMS key: server-side encryption ---------------------------------------------

port=$(free_port $((port + 1)))
console=$(free_port $((port + 1)))
kms_key=tally-test-key
mkdir -p "$dir/minio"
log "starting MinIO with KMS key $kms_key on $host:$port"
start minio-kms "$port" env MINIO_ROOT_USER="$access_key" MINIO_ROOT_PASSWORD="$secret_key" MINIO_UPDATE=off \
	MINIO_KMS_SECRET_KEY="$kms_key:$(head -c 32 /dev/urandom | base64)" \
	"$minio_bin" server "$dir/minio" --address "$host:$port" --console-address "$host:$console"
use_store "$host:$port"
log "MinIO+KMS: storage tests with S3_SSE=SSE-S3"
TALLY_TEST_S3_SSE=SSE-S3 $go test -race -count=1 ${TESTFLAGS:-} ./storage/...
log "MinIO+KMS: server-side encryption with S3_SSE=SSE-KMS"
TALLY_TEST_S3_SSE=SSE-KMS TALLY_TEST_S3_SSE_KMS_KEY_ID="$kms_key" \
	$go test -race -count=1 ${TESTFLAGS:-} ./storage/ -run '^TestPutAppliesServerSideEncryption$'
log "all passed"
