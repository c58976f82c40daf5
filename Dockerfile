# syntax=docker/dockerfile:1
# The recipe for users with a Docker engine. It builds what `make images`
# builds without one (hack/build-images.sh): each binary static, alone in an
# image with a CA bundle and /etc/passwd and /etc/group naming the non-root
# user 65532 it runs as.
#   docker build --target apiserver -t berth-apiserver .
#   docker build --target operator  -t berth-operator .
#   docker build --target berth     -t berth-cli .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Static glibc binaries; --target keeps the flag off build scripts and proc macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
      --target x86_64-unknown-linux-gnu -p berth-apiserver -p berth-operator -p berth-cli \
 && mkdir -p /out \
 && cp target/x86_64-unknown-linux-gnu/release/apiserver target/x86_64-unknown-linux-gnu/release/operator \
       target/x86_64-unknown-linux-gnu/release/berth /out/ \
 && strip /out/apiserver /out/operator /out/berth

FROM scratch AS base
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY hack/oci/rootfs/passwd /etc/passwd
COPY hack/oci/rootfs/group /etc/group
USER 65532:65532

FROM base AS apiserver
COPY --from=build /out/apiserver /usr/local/bin/apiserver
EXPOSE 8443 8080 8081
ENTRYPOINT ["/usr/local/bin/apiserver"]

FROM base AS operator
COPY --from=build /out/operator /usr/local/bin/operator
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/operator"]

FROM base AS berth
COPY --from=build /out/berth /usr/local/bin/berth
ENTRYPOINT ["/usr/local/bin/berth"]
