#!/usr/bin/env bash
# Builds the pinned Helm from the Go module proxy into the per-user cache (once; a few minutes)
# and prints its path (scripts/gotool.sh).
#
#   scripts/helm.sh          build when missing, print the binary's path on stdout
set -euo pipefail

helm_version=v3.22.0
exec "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" "helm-$helm_version" "helm.sh/helm/v3/cmd/helm@$helm_version"
