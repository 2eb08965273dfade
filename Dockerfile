# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian as a
# non-root user. The image talks to an external ClickHouse (see
# docker-compose.yml); the managed local ClickHouse is for bare-metal runs.
FROM rust:1.95-bookworm AS build
# The Kafka source's rdkafka builds librdkafka from source (its configure
# script and make): a C/C++ toolchain, perl, python3, zlib, OpenSSL, SASL.
RUN apt-get update && \
    apt-get install -y --no-install-recommends \
        build-essential perl python3 pkg-config zlib1g-dev libssl-dev libsasl2-dev && \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY schema schema
COPY ingest ingest
COPY query query
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin comet && \
    cp target/release/comet /usr/local/bin/comet

FROM debian:bookworm-slim
RUN apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --home-dir /var/lib/comet --create-home comet
COPY --from=build /usr/local/bin/comet /usr/local/bin/comet
COPY comet.example.yaml /etc/comet/comet.yaml
USER comet
WORKDIR /var/lib/comet
ENV COMET_DATA_DIR=/var/lib/comet
EXPOSE 9090 4317 4318
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD curl -fsS http://127.0.0.1:9090/-/ready || exit 1
ENTRYPOINT ["comet"]
CMD ["serve", "--config", "/etc/comet/comet.yaml"]
