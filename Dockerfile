# syntax=docker/dockerfile:1
# One image for every role: `sluice distributor` (the default), `sluice analyzer`,
# `sluice emitter`. docker-compose.yml runs them all from it.
#
# e2e/deploy_test.go parses this file and runs the build stage's `go build` line as
# written, then checks the result is a static binary, since tests run where no
# Docker engine does. Keep the build on one RUN line that starts with the
# environment it needs.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so editing the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# What `sluice version` and distributor_build_info report (the context has no .git):
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#                --build-arg COMMIT=$(git rev-parse --short HEAD) .
# Left empty they read "dev" and "unknown".
ARG VERSION=
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/sluicelog/sluice/buildinfo.version=${VERSION} -X github.com/sluicelog/sluice/buildinfo.commit=${COMMIT}" -o /out/sluice .

# distroless/static: CA certificates, /etc/passwd with a nonroot user, tzdata and
# nothing else; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /sluice
USER nonroot:nonroot
# ingest (PORT), metrics and admin (METRICS_ADDR), the analyzers' default port
EXPOSE 8080 9100 9001
ENTRYPOINT ["/sluice"]
CMD ["distributor"]
