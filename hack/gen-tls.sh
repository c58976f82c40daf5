#!/usr/bin/env bash
# Writes a throwaway CA and a serving certificate for 127.0.0.1 and localhost:
#   DIR/ca.crt DIR/ca.key DIR/tls.crt DIR/tls.key
# Used by the local control plane, `make run` and the test harness.
set -euo pipefail
dir=${1:?usage: hack/gen-tls.sh DIR [COMMON-NAME]}
cn=${2:-berth-local}
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$cn-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 3650 -extfile "$dir/san.ext" -out "$dir/tls.crt" 2>/dev/null
rm -f "$dir/tls.csr" "$dir/san.ext" "$dir/ca.srl"
