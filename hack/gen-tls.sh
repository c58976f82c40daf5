#!/usr/bin/env bash
# Writes a throwaway CA and a serving certificate for 127.0.0.1 and localhost
# (and EXTRA-SANS, such as "IP:198.18.1.1,DNS:name"):
#   DIR/ca.crt DIR/ca.key DIR/tls.crt DIR/tls.key
# Used by the local control plane, `make run` and the test harness.
# Keys are ECDSA P-256 (PKCS#8 PEM), signatures ECDSA with SHA-256: a TLS
# handshake signs far faster than with RSA-2048.
set -euo pipefail
dir=${1:?usage: hack/gen-tls.sh DIR [COMMON-NAME [EXTRA-SANS]]}
cn=${2:-berth-local}
extra=${3:+,$3}
mkdir -p "$dir"
p256=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes)
openssl req -x509 "${p256[@]}" -days 3650 -subj "/CN=$cn-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req "${p256[@]}" -subj "/CN=$cn" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc%s\nextendedKeyUsage=serverAuth\n' "$extra" >"$dir/san.ext"
openssl x509 -req -sha256 -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 3650 -extfile "$dir/san.ext" -out "$dir/tls.crt" 2>/dev/null
rm -f "$dir/tls.csr" "$dir/san.ext" "$dir/ca.srl"
