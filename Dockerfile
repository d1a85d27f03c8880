# syntax=docker/dockerfile:1
#
# samlgate: a small non-root image.
#
#   docker build -t samlgate .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/samlgate.toml:/etc/samlgate/samlgate.toml:ro" \
#     -v "$PWD/keys:/etc/samlgate/keys:ro" samlgate
#
# The build stage runs scripts/build-release, the script CI should run as well: change
# the build there, never here (see docs/operations.md, "The Docker image").

FROM rust:1-bookworm AS build
# Native build dependencies of samael/xmlsec (bindgen needs libclang); the same list as
# in scripts/test.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev pkg-config libxml2-dev libxmlsec1-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-release /out

FROM debian:bookworm-slim
# Exactly the libraries the binary links (ldd): libxmlsec1-openssl, libxmlsec1, libssl3
# (libssl and libcrypto) and libxml2 (libxslt, libicu, zlib and liblzma come with them);
# libc and libgcc_s are in the base image. ca-certificates: the system roots trusted for
# an https upstream, the lookup APIs and rediss:// (plus upstream_tls.ca_file).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libxml2 libxmlsec1 libxmlsec1-openssl libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 samlgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin samlgate \
 && mkdir -p /etc/samlgate
COPY --from=build /out/samlgate /usr/local/bin/samlgate

# Configuration by mount (a file at SAMLGATE_CONFIG, keys beside it) and by environment
# (SAMLGATE_<SECTION>__<KEY>, e.g. SAMLGATE_REPLAY__REDIS_URL). The config file must set
# listen/admin_listen to 0.0.0.0 to be reachable from outside the container.
ENV SAMLGATE_CONFIG=/etc/samlgate/samlgate.toml
USER 10001:10001
# 8080: public listener; 9090: admin listener (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
# No HEALTHCHECK: orchestrators probe /healthz and /readyz on the admin port.
ENTRYPOINT ["samlgate"]
CMD ["run"]
