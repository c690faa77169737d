# Multi-stage build of the `ferry` binary.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY actors actors
COPY src src
COPY config config
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin ferry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 ferry
COPY --from=build /src/target/release/ferry /usr/local/bin/ferry
USER ferry
# In a container the API must listen beyond loopback.
ENV FERRY__HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["ferry"]
CMD ["serve"]
