# Multi-stage build: a static linkwall binary in a minimal, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/linkwall ./cmd/linkwall

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/linkwall /usr/local/bin/linkwall
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/linkwall"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--data", "/tmp/linkwall-data"]
