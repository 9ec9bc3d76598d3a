#!/usr/bin/env bash
# make demo: the whole product end to end on this machine.
#
# Services up (PostgreSQL, MinIO), migrations, a demo tenant with ~100k
# transactions, the API and one worker as real processes; then, as the demo
# auditor over HTTP: create a transaction_summary report, wait for it (GET by id
# with Prefer: wait, no polling), download it, check its SHA-256, show that the create-only
# auditor is refused the download.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if ! command -v jq >/dev/null; then
	say "installing jq (Debian)"
	sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
	$sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq
fi

say "services: PostgreSQL and MinIO"
services_env=$(scripts/services.sh up)
eval "$services_env"

# The demo runs in its own database so it never touches other data.
export DATABASE_URL="${DEMO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tally_demo?sslmode=disable}"
psql "${DATABASE_URL/tally_demo/postgres}" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'tally_demo'" | grep -q 1 ||
	psql "${DATABASE_URL/tally_demo/postgres}" -qc "CREATE DATABASE tally_demo"

say "building binaries"
mkdir -p bin && go build -o bin/ ./cmd/tally-api ./cmd/tally-worker ./cmd/tallyctl

out=artifacts/demo
mkdir -p "$out"
export PORT="${DEMO_PORT:-18080}" TALLY_METRICS_PORT="${DEMO_METRICS_PORT:-19090}"
export LOG_FORMAT=json LOG_LEVEL=info TALLY_FETCH_POLL_INTERVAL=200ms
# A local demo: the worker uses the public development pseudonym key.
export TALLY_ENV="${TALLY_ENV:-development}"
export TALLY_ADMIN_USER=admin TALLY_ADMIN_PASSWORD="${TALLY_ADMIN_PASSWORD:-demo-admin-password}"
api="http://127.0.0.1:$PORT"

say "migrations"
bin/tallyctl migrate

say "demo tenant (tallyctl demo-seed --json)"
bin/tallyctl demo-seed --json --transactions "${DEMO_TRANSACTIONS:-100000}" > "$out/tenant.json"
foreign=$(jq -r '.application.foreign_id' "$out/tenant.json")
token_of() { jq -r --arg r "$1" '.users[] | select(.role == $r) | .token' "$out/tenant.json"; }
auditor=$(token_of auditor)
creator=$(token_of creator)
case_id=$(jq -r '[.cases[] | select(.flags | index("line_items"))][0].id' "$out/tenant.json")
jq '{organization, application, users: [.users[] | {role, email}], cases}' "$out/tenant.json"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

say "starting tally-api on :$PORT and one tally-worker (logs in $out/)"
bin/tally-api >"$out/api.log" 2>&1 & pids+=($!)
bin/tally-worker >"$out/worker.log" 2>&1 & pids+=($!)
for i in $(seq 1 100); do
	if curl -fsS "$api/readyz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$TALLY_METRICS_PORT/readyz" >/dev/null 2>&1; then
		break
	fi
	[[ $i == 100 ]] && { tail -20 "$out/api.log" "$out/worker.log"; die "API or worker not ready after 20 s"; }
	sleep 0.2
done

say "GET /auth/me as the auditor"
curl -fsS "$api/auth/me" -H "Authorization: Bearer $auditor" | jq -c '{user: .user.email, applications: [.applications[] | {foreign_id, permissions}]}'

say "POST /api/applications/$foreign/case-reports (transaction_summary, case $case_id)"
t0=$(date +%s%N)
created=$(curl -fsS -X POST "$api/api/applications/$foreign/case-reports" \
	-H "Authorization: Bearer $auditor" -H 'Content-Type: application/json' \
	-H "Idempotency-Key: demo-$(date +%s%N)" -H 'X-Request-ID: demo-request-1' \
	-d "{\"case_id\":\"$case_id\",\"report_type\":\"transaction_summary\"}")
echo "$created" | jq -c '{id, status, type, created_by_email, metadata: {case_id: .metadata.case_id, disclosure_flags: .metadata.disclosure_flags}}'
id=$(echo "$created" | jq -r .id)

say "GET /api/applications/$foreign/reports/$id with Prefer: wait=30: answered when its status changes, no polling"
status=
for i in $(seq 1 4); do
	hdrs=$(mktemp)
	body=$(curl -fsS -D "$hdrs" "$api/api/applications/$foreign/reports/$id" \
		-H "Authorization: Bearer $auditor" -H "Prefer: wait=30")
	status=$(echo "$body" | jq -r .status)
	applied=$(grep -i '^preference-applied:' "$hdrs" | cut -d' ' -f2- | tr -d '\r')
	rm -f "$hdrs"
	printf '  %6.2fs  %s (Preference-Applied: %s)\n' "$(awk -v a="$(date +%s%N)" -v b="$t0" 'BEGIN{print (a-b)/1e9}')" "$status" "${applied:-none}"
	case $status in
		ready) break ;;
		failed|canceled|expired) echo "$body" | jq . ; die "report ended $status" ;;
	esac
done
[[ $status == ready ]] || die "report not ready after 120 s"
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))

report=$(curl -fsS "$api/api/applications/$foreign/reports?limit=10" -H "Authorization: Bearer $auditor" | jq --arg id "$id" '.[] | select(.id == $id)')
echo "$report" | jq '{id, status, size_bytes, sha256, content_type, row_count: .metadata.row_count, totals: .metadata.totals, started_at, completed_at}'

say "GET .../reports/$id/download as the auditor"
file="$out/$id.csv"
curl -fsS -o "$file" -D "$out/download.headers" "$api/api/applications/$foreign/reports/$id/download" -H "Authorization: Bearer $auditor"
grep -iE '^(content-type|content-length|content-disposition|etag):' "$out/download.headers"
echo "first lines of $file:"
head -n 8 "$file"
echo "..."
tail -n 3 "$file"
got=$(sha256sum "$file" | cut -d' ' -f1)
want=$(echo "$report" | jq -r .sha256)
rows=$(echo "$report" | jq -r .metadata.row_count)
printf '\nrow count (transactions in scope): %s\nfile lines: %s\nSHA-256 of the file: %s\nSHA-256 the API reports: %s\n' "$rows" "$(wc -l < "$file")" "$got" "$want"
[[ $got == "$want" ]] || die "SHA-256 mismatch"

say "the create-only auditor may create but not download"
code=$(curl -sS -o "$out/creator-download.json" -w '%{http_code}' "$api/api/applications/$foreign/reports/$id/download" -H "Authorization: Bearer $creator")
echo "HTTP $code $(cat "$out/creator-download.json")"
[[ $code == 403 ]] || die "create-only auditor got $code on download, want 403"

say "a sample of /metrics (API on :$PORT, worker on :$TALLY_METRICS_PORT)"
curl -fsS "$api/metrics" | grep -E '^tally_(reports_created_total|report_downloads_total)' || true
curl -fsS "$api/metrics" | grep -E '^tally_http_request_duration_seconds_count' | head -5 || true
curl -fsS "http://127.0.0.1:$TALLY_METRICS_PORT/metrics" |
	grep -E '^tally_(reports_ready_total|report_generation_seconds_(sum|count)|report_bytes_(sum|count)|queue_oldest_available_seconds)' || true

say "done: report $id ready ${ms} ms after POST (as the portal sees it, with Prefer: wait); file at $file"
