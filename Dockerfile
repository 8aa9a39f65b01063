# syntax=docker/dockerfile:1
# keygate and the demo upstream (envoy/echo), built once, run as non-root.
#   docker build -t keygate .                  # the keygate image (default target)
#   docker build --target echo -t keygate-echo .
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# SQLite is pure Go (modernc.org/sqlite), so a static binary needs no cgo.
# vtprotobuf: generated marshalling for Envoy's types (serve_codec.go);
# grpcnotrace: gRPC without x/net/trace (Makefile, TAGS).
ENV CGO_ENABLED=0
RUN go build -trimpath -tags 'vtprotobuf grpcnotrace' -ldflags="-s -w" -o /out/keygate ./cmd/keygate \
 && go build -trimpath -ldflags="-s -w" -o /out/echo ./envoy/echo

# The runtime is alpine rather than distroless for busybox wget (health
# checks) and sh (the compose seed step); both images stay small.
FROM alpine:3.22 AS base
RUN apk add --no-cache ca-certificates \
 && adduser -D -H -u 10001 keygate \
 && mkdir /data && chown keygate /data
USER 10001:10001
WORKDIR /data

FROM base AS echo
COPY --from=build /out/echo /usr/local/bin/echo-upstream
EXPOSE 8090
ENTRYPOINT ["echo-upstream"]

FROM base AS keygate
COPY --from=build /out/keygate /usr/local/bin/keygate
# gRPC ext_authz, HTTP (tokens, health, metrics, forward-auth).
EXPOSE 9191 8080
ENTRYPOINT ["keygate"]
CMD ["serve"]
