# syntax=docker/dockerfile:1
# Build: docker build -t calpresence .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/calpresence ./cmd/calpresence \
 && mkdir -p /out/var/lib/calpresence /out/etc/calpresence

# Static, non-root runtime: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/calpresence /calpresence
COPY --from=build --chown=65532:65532 /out/var/lib/calpresence /var/lib/calpresence
COPY --from=build /out/etc/calpresence /etc/calpresence
USER 65532:65532
VOLUME ["/var/lib/calpresence"]
EXPOSE 8080
ENTRYPOINT ["/calpresence"]
CMD ["run"]
