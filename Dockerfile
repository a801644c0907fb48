# syntax=docker/dockerfile:1
# Portreeve's image, for people with a Docker engine (or buildx). `make image`
# builds the same image without one (hack/image): one layer with the static
# binary at /portreeve, run as 65532:65532, entrypoint ["/portreeve"];
# hack/image's test keeps the final stage below in step with it.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg REVISION=$(git rev-parse HEAD) -t portreeve/portreeve:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/portreeve:<tag> --push .

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/portreeve ./cmd/portreeve

# Nothing but the binary: no shell, no libc, no /etc. The numeric user lets
# the kubelet enforce runAsNonRoot without an /etc/passwd.
FROM scratch
COPY --from=build --chmod=0755 /out/portreeve /portreeve
USER 65532:65532
ENTRYPOINT ["/portreeve"]
