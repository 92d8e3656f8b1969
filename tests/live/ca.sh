#!/usr/bin/env bash
# Copied unchanged from ../shared/live/ca.sh (the project's live-Synapse harness),
# so that `npm test` runs without ../shared.
# ca.sh DIR HOST... : a throwaway CA and one TLS certificate per host name.
#
#   DIR/ca/ca.crt, DIR/ca/ca.key          the CA (made once, reused)
#   DIR/certs/HOST.crt, DIR/certs/HOST.key  leaf cert, SAN = DNS:HOST, DNS:localhost, IP:127.0.0.1
#
# Idempotent: the CA and valid certs are kept. Test use only; keys are unencrypted.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR HOST..." >&2; exit 2; }
dir=$1; shift
mkdir -p "$dir/ca" "$dir/certs"
ca="$dir/ca"
exec 9>"$ca/.lock" && flock 9   # parallel callers must not make two CAs

if [ ! -s "$ca/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$ca/ca.key" -out "$ca/ca.crt" -subj "/CN=roomdag-live test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
fi

for host in "$@"; do
  out="$dir/certs/$host"
  # keep a cert that our current CA signed; reissue anything else
  openssl verify -CAfile "$ca/ca.crt" "$out.crt" >/dev/null 2>&1 && continue
  ext=$(mktemp)
  printf '%s\n' "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" \
    "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" \
    -keyout "$out.key" -out "$out.csr" 2>/dev/null
  openssl x509 -req -in "$out.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$out.crt" 2>/dev/null
  rm -f "$out.csr" "$ext"
  echo "ca.sh: issued $out.crt" >&2
done
