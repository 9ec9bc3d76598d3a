#!/usr/bin/env bash
# Local services for Tally without Docker: PostgreSQL (the machine's cluster) and MinIO (built
# from source into a per-user cache and run from this checkout).
#
#   scripts/services.sh [up]   make both reachable, create databases and the bucket, print env
#   scripts/services.sh down   stop only what `up` started from this checkout
#   scripts/services.sh env    print the `export` lines for the API, workers and tests
#
# Only `export` lines go to stdout, so `eval "$(scripts/services.sh up)"` works; progress goes
# to stderr.
#
# A MinIO that already answers on the port with our credentials is reused, whoever started it
# (another checkout, a CI clone): `up` never starts a second one, and `down` stops only a MinIO
# (or PostgreSQL) whose marker file in .services/ says this checkout started it.
#
# Overrides: TALLY_PG_HOST, TALLY_PG_PORT, TALLY_PG_USER, TALLY_MINIO_PORT,
# TALLY_MINIO_CONSOLE_PORT, TALLY_CACHE_DIR.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$repo/.services"
cache="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}"

minio_module=github.com/minio/minio
minio_version=v0.0.0-20260212201848-7aac2a2c5b7c
minio_bin="$cache/bin/minio"

pg_host="${TALLY_PG_HOST:-127.0.0.1}"
pg_port="${TALLY_PG_PORT:-5432}"
pg_user="${TALLY_PG_USER:-postgres}"
pg_databases=(tally tally_test)

minio_host=127.0.0.1
minio_port="${TALLY_MINIO_PORT:-9000}"
minio_console_port="${TALLY_MINIO_CONSOLE_PORT:-$((minio_port + 1))}"
minio_url="http://$minio_host:$minio_port"
s3_access_key=tally
s3_secret_key=tally-secret-key
s3_bucket=tally
s3_region=us-east-1

log() { printf 'services: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Lock file descriptors: 8 guards this checkout's state, 9 a machine-wide resource (the MinIO
# build, the MinIO port). Children that outlive us (MinIO, postgres) must not inherit them, or
# they would hold the locks forever: every long-lived start closes 8 and 9.
lock_state() {
	mkdir -p "$state"
	exec 8>"$state/lock"
	flock 8
}

lock_machine() { # name
	mkdir -p "$cache"
	exec 9>"$cache/$1.lock"
	if ! flock -n 9; then
		log "waiting for another 'services.sh' holding $cache/$1.lock"
		flock 9
	fi
}

unlock_machine() { exec 9>&-; }

# --- environment -------------------------------------------------------------------------------

print_env() {
	local db_base="postgres://$pg_user@$pg_host:$pg_port"
	local name value
	while IFS='=' read -r name value; do
		printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
	done <<EOF
DATABASE_URL=$db_base/tally?sslmode=disable
S3_ENDPOINT=$minio_host:$minio_port
S3_ACCESS_KEY_ID=$s3_access_key
S3_SECRET_ACCESS_KEY=$s3_secret_key
S3_BUCKET=$s3_bucket
S3_REGION=$s3_region
S3_USE_TLS=false
TALLY_TEST_DATABASE_URL=$db_base/tally_test?sslmode=disable
TALLY_TEST_S3_ENDPOINT=$minio_host:$minio_port
TALLY_TEST_S3_ACCESS_KEY_ID=$s3_access_key
TALLY_TEST_S3_SECRET_ACCESS_KEY=$s3_secret_key
TALLY_TEST_S3_REGION=$s3_region
TALLY_TEST_S3_USE_TLS=false
EOF
}

# --- PostgreSQL --------------------------------------------------------------------------------

pg_ready() { pg_isready -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -t 2; }

pg_is_local() { [[ $pg_host == 127.0.0.1 || $pg_host == localhost || $pg_host == ::1 ]]; }

pg_cluster_version() {
	# The version of the stopped local Debian cluster "main" configured for our port, e.g. 15.
	local version cluster port status _
	command -v pg_lsclusters >/dev/null || return 1
	while read -r version cluster port status _; do
		if [[ $cluster == main && $port == "$pg_port" && $status == down* ]]; then
			printf '%s\n' "$version"
			return 0
		fi
	done < <(pg_lsclusters -h 2>/dev/null)
	return 1
}

pg_has_db() { # name
	local found
	found=$(psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -XtAq -v db="$1" \
		<<<"SELECT 1 FROM pg_database WHERE datname = :'db';") ||
		die "cannot query PostgreSQL on $pg_host:$pg_port as $pg_user"
	[[ $found == 1 ]]
}

postgres_up() {
	command -v pg_isready >/dev/null || die "pg_isready not found: install the PostgreSQL client tools"
	if pg_ready; then
		log "PostgreSQL is up on $pg_host:$pg_port"
	else
		local version
		if pg_is_local && command -v pg_ctlcluster >/dev/null && version=$(pg_cluster_version); then
			log "starting PostgreSQL $version (cluster main)"
			pg_ctlcluster --skip-systemctl-redirect "$version" main start 8>&- 9>&- >&2 ||
				die "pg_ctlcluster could not start PostgreSQL $version/main"
			printf '%s\n' "$version" >"$state/started-postgres"
		else
			log "PostgreSQL is not answering on $pg_host:$pg_port and no local cluster to start; waiting"
		fi
		local deadline=$((SECONDS + 60))
		until pg_ready; do
			((SECONDS < deadline)) || die "PostgreSQL on $pg_host:$pg_port not ready after 60 s"
			sleep 1
		done
		log "PostgreSQL is up on $pg_host:$pg_port"
	fi

	local db
	for db in "${pg_databases[@]}"; do
		pg_has_db "$db" && continue
		log "creating database $db"
		# A concurrent `up` may win the race; a duplicate is not an error.
		createdb -h "$pg_host" -p "$pg_port" -U "$pg_user" "$db" 2>/dev/null || pg_has_db "$db" ||
			die "cannot create database $db as $pg_user"
	done
}

postgres_down() {
	[[ -f $state/started-postgres ]] || return 0
	local version
	version=$(<"$state/started-postgres")
	log "stopping PostgreSQL $version (started by this checkout)"
	pg_ctlcluster --skip-systemctl-redirect "$version" main stop >&2 || log "pg_ctlcluster stop failed"
	rm -f "$state/started-postgres"
}

# --- MinIO -------------------------------------------------------------------------------------

minio_build() {
	[[ -x $minio_bin ]] && return 0
	# A build that was started without scripts/gotool.sh (by hand) is waited for rather than
	# duplicated; gotool.sh's own lock serializes the builds it runs.
	local waited=0
	while pgrep -f "go install $minio_module@" >/dev/null; do
		((waited % 30 == 0)) && log "waiting for a MinIO build already running (${waited}s)"
		sleep 5
		waited=$((waited + 5))
	done
	"$repo/scripts/gotool.sh" minio "$minio_module@$minio_version" >/dev/null
	[[ -x $minio_bin ]] || die "MinIO binary missing at $minio_bin"
}

minio_healthy() {
	curl -fsS -o /dev/null --max-time 2 "$minio_url/minio/health/live" 2>/dev/null &&
		curl -fsS -o /dev/null --max-time 2 "$minio_url/minio/health/ready" 2>/dev/null
}

# Creates the bucket, or confirms it exists and belongs to our credentials. Fails when the
# server on the port is a MinIO with different credentials (or not MinIO at all).
minio_ensure_bucket() {
	local body code
	body=$(mktemp)
	code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 10 \
		--aws-sigv4 "aws:amz:$s3_region:s3" --user "$s3_access_key:$s3_secret_key" \
		-X PUT "$minio_url/$s3_bucket" 2>/dev/null) || code=000
	case $code in
	200) log "created bucket $s3_bucket" ;;
	409) grep -q BucketAlreadyOwnedByYou "$body" || {
		log "$(cat "$body")"
		rm -f "$body"
		return 1
	} ;;
	*)
		log "bucket PUT returned HTTP $code: $(head -c 300 "$body")"
		rm -f "$body"
		return 1
		;;
	esac
	rm -f "$body"
	# Confirm with a signed HEAD that the bucket is usable with these credentials.
	curl -fsS -o /dev/null --max-time 10 -I \
		--aws-sigv4 "aws:amz:$s3_region:s3" --user "$s3_access_key:$s3_secret_key" \
		"$minio_url/$s3_bucket" 2>/dev/null
}

minio_pid() { # prints the pid of the MinIO this checkout started, if it is still running
	[[ -f $state/minio.pid ]] || return 1
	local pid
	pid=$(<"$state/minio.pid")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q minio || return 1
	printf '%s\n' "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/$minio_host/$1") 2>/dev/null; }

minio_wait_healthy() { # pid
	local pid=$1 deadline=$((SECONDS + 60))
	until minio_healthy; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$state/started-minio" "$state/minio.pid"
			log "MinIO exited; last lines of $state/minio.log:"
			tail -n 30 "$state/minio.log" >&2 || true
			die "MinIO did not start"
		fi
		if ((SECONDS >= deadline)); then
			log "MinIO not healthy after 60 s; last lines of $state/minio.log:"
			tail -n 30 "$state/minio.log" >&2 || true
			die "MinIO did not become healthy"
		fi
		sleep 0.5
	done
}

minio_up() {
	# The port lock serializes checkouts racing to start a MinIO on the same port.
	lock_machine "minio-$minio_port"
	local pid
	if ! minio_healthy && pid=$(minio_pid); then
		log "MinIO started by this checkout (pid $pid) is not healthy yet; waiting"
		minio_wait_healthy "$pid"
	fi
	if minio_healthy; then
		minio_ensure_bucket ||
			die "something healthy answers on $minio_url but not with our credentials ($s3_access_key); stop it or set TALLY_MINIO_PORT"
		if minio_pid >/dev/null; then
			log "MinIO (started by this checkout) is up on $minio_url"
		else
			log "reusing the MinIO already running on $minio_url"
		fi
		unlock_machine
		return 0
	fi
	if port_in_use "$minio_port"; then
		die "port $minio_port is in use by something that is not a healthy MinIO; set TALLY_MINIO_PORT"
	fi
	unlock_machine
	minio_build
	lock_machine "minio-$minio_port"

	mkdir -p "$state/minio/data"
	rm -f "$state/started-minio"
	log "starting MinIO on $minio_url (console http://$minio_host:$minio_console_port), log $state/minio.log"
	MINIO_ROOT_USER="$s3_access_key" MINIO_ROOT_PASSWORD="$s3_secret_key" \
		MINIO_UPDATE=off \
		setsid nohup "$minio_bin" server "$state/minio/data" \
		--address "$minio_host:$minio_port" \
		--console-address "$minio_host:$minio_console_port" \
		</dev/null >"$state/minio.log" 2>&1 8>&- 9>&- &
	pid=$!
	printf '%s\n' "$pid" >"$state/minio.pid"
	date -u +%FT%TZ >"$state/started-minio"

	minio_wait_healthy "$pid"
	minio_ensure_bucket || die "cannot create bucket $s3_bucket on $minio_url"
	log "MinIO is up on $minio_url (pid $pid)"
	unlock_machine
}

minio_down() {
	if [[ ! -f $state/started-minio ]]; then
		log "MinIO was not started by this checkout; leaving it alone"
		return 0
	fi
	local pid
	if pid=$(minio_pid); then
		log "stopping MinIO (pid $pid)"
		kill "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 15))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "MinIO still running after 15 s; sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
	else
		log "MinIO started by this checkout is no longer running"
	fi
	rm -f "$state/started-minio" "$state/minio.pid"
}

# --- main --------------------------------------------------------------------------------------

case "${1:-up}" in
up)
	lock_state
	postgres_up
	minio_up
	log "services ready; environment:"
	print_env
	;;
down)
	lock_state
	minio_down
	postgres_down
	;;
env)
	print_env
	;;
-h | --help | help)
	sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	;;
*)
	die "unknown command '$1' (want up, down or env)"
	;;
esac
