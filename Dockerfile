# syntax=docker/dockerfile:1

# Builds the Tally binaries (tally-api, tally-worker, tallyctl) into one runtime image; the
# command chooses the role (see compose.yaml).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source changes do not invalidate the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The build context has no .git, so the version and revision that --version and tally_build_info
# report come from build arguments: docker build --build-arg VERSION=v1.4.0 --build-arg REVISION=$(git rev-parse HEAD) .
ARG VERSION=devel
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    CGO_ENABLED=0 go build -trimpath -o /out/ \
        -ldflags="-s -w -X github.com/tally-compliance/tally/internal/buildinfo.version=${VERSION} -X github.com/tally-compliance/tally/internal/buildinfo.revision=${REVISION}" \
        ./cmd/tally-api ./cmd/tally-worker ./cmd/tallyctl

FROM debian:bookworm-slim
# curl is for container health checks (compose.yaml).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --home-dir /nonexistent --shell /usr/sbin/nologin tally
COPY --from=build /out/ /usr/local/bin/
USER tally:tally
# 8080: API; 9090: worker metrics and health.
EXPOSE 8080 9090
CMD ["tally-api"]
