# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a small Debian image as a
# non-root user. One image serves every role: `serve`, `serve --no-worker`,
# `worker`, `migrate`.

FROM rust:1.95-slim-bookworm AS build
# make: tikv-jemalloc-sys builds jemalloc from source (the slim image has gcc, not make).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
# rust-toolchain.toml stays out: the image already has this Rust, and the file
# would make rustup fetch extra components.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml bench/Cargo.toml
COPY client/Cargo.toml client/Cargo.toml
RUN mkdir -p src bench/src/bin client/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs client/src/lib.rs \
    && for b in loadgen ceiling insertbench; do echo 'fn main() {}' > bench/src/bin/$b.rs; done \
    && cargo build --release --locked -p the-eye \
    && rm -rf src bench/src client/src
COPY src src
COPY migrations migrations
# The binary embeds its templates, the admin's CSS, the tracker and the demo site.
COPY templates templates
COPY static static
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p the-eye

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/the-eye --create-home the-eye
COPY --from=build /src/target/release/the-eye /usr/local/bin/the-eye
USER the-eye
WORKDIR /var/lib/the-eye
ENV THE_EYE_LISTEN=0.0.0.0:8000 \
    THE_EYE_DATA_DIR=/var/lib/the-eye \
    THE_EYE_LOG_FORMAT=json
# The spool and the SQLite store of the embedded deployment live here.
VOLUME ["/var/lib/the-eye"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["the-eye"]
CMD ["serve"]
