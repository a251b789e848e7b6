# Builds the `merklog` binary and runs `merklog serve`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p merklog-cli

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/merklog merklog \
    && mkdir -p /var/lib/merklog/data /keys \
    && chown merklog /var/lib/merklog /var/lib/merklog/data /keys
COPY --from=build /src/target/release/merklog /usr/local/bin/merklog
USER merklog
WORKDIR /var/lib/merklog
EXPOSE 7300
ENV MERKLOG_LISTEN=0.0.0.0:7300
ENTRYPOINT ["merklog"]
CMD ["serve"]
