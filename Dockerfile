# wsgate container image: a multi-stage build, a small Debian runtime, a non-root user.
#
#   docker build -t wsgate .
#   docker run -p 8080:8080 -e WSGATE_JWT_SECRET=... wsgate

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN mkdir -p src testkit/src/bin \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && touch testkit/src/lib.rs \
 && cargo build --release --locked --bin wsgate \
 && rm -rf src testkit/src
COPY src src
COPY testkit/src testkit/src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin wsgate

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wsgate
WORKDIR /app
COPY --from=build /src/target/release/wsgate /usr/local/bin/wsgate
COPY client client
USER wsgate
ENV WSGATE_ADDR=0.0.0.0:8080 \
    WSGATE_CLIENT_DIR=/app/client \
    WSGATE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/api/health || exit 1
ENTRYPOINT ["/usr/local/bin/wsgate"]
