# syntax=docker/dockerfile:1
# Build: docker build -t calpresence .
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Another module proxy (a mirror, a proxy behind a firewall):
#   docker build --build-arg GOPROXY=https://… .
ARG GOPROXY
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# The cache mounts keep Go's module and build caches between builds: a source
# change recompiles only what changed, not msgraph-sdk-go (minutes, GBs).
# The state directory belongs to nonroot and to group 0, group-writable
# (g=u): an arbitrary uid in group 0 (OpenShift) can write it too.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/calpresence ./cmd/calpresence \
 && mkdir -p /out/state/calpresence /out/etc/calpresence \
 && chown 65532:0 /out/state/calpresence && chmod 0775 /out/state/calpresence

# Static, non-root runtime: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/calpresence /calpresence
# COPY takes a folder's contents, not the folder: copying its parent keeps
# the folder's owner and mode (65532:0, 0775) and leaves /var/lib alone.
COPY --from=build /out/state/ /var/lib/
COPY --from=build /out/etc/calpresence /etc/calpresence
USER 65532:65532
# The work is GC-bound: a soft memory limit keeps a 10,000-feed pass under
# 512 MB RSS (BENCHMARKS.md). Override with -e GOMEMLIMIT=… if needed.
ENV GOMEMLIMIT=384MiB
VOLUME ["/var/lib/calpresence"]
EXPOSE 8080
ENTRYPOINT ["/calpresence"]
CMD ["run"]
