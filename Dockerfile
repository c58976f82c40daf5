# syntax=docker/dockerfile:1
# One build stage compiles all three binaries; each binary gets its own minimal,
# non-root runtime image:
#   docker build --target apiserver -t berth-apiserver .
#   docker build --target operator  -t berth-operator .
#   docker build --target berth     -t berth-cli .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p berth-apiserver -p berth-operator -p berth-cli \
 && mkdir -p /out \
 && cp target/release/apiserver target/release/operator target/release/berth /out/

# distroless/cc: glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS apiserver
COPY --from=build /out/apiserver /usr/local/bin/apiserver
USER 65532:65532
EXPOSE 8443 8080 8081
ENTRYPOINT ["/usr/local/bin/apiserver"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/operator /usr/local/bin/operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS berth
COPY --from=build /out/berth /usr/local/bin/berth
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/berth"]
