#!/usr/bin/env bash
# TLS certificates and SuperNode authentication keys for a fedlora deployment on Flower.
#
#   bash scripts/make_certs.sh DIR [NUM_CLIENTS] [HOSTS]
#
# DIR/ca.crt, ca.key          a self-signed certificate authority (keep ca.key off the clients)
# DIR/server.pem, server.key  the SuperLink's certificate, signed by the CA, valid for HOSTS
# DIR/client_<i>, client_<i>.pub
#                             one ECDSA P-384 key pair per client in OpenSSH format: the private key
#                             goes to that client's machine, the public key is registered on the server
#
# HOSTS is a comma-separated list of DNS names and IP addresses the clients use to reach the server
# (default: localhost,127.0.0.1; both are always added, because the SuperLink's own ServerApp process
# connects to it on 127.0.0.1). For a real deployment use a CA your organisation trusts; this script is
# meant for tests and for trying a deployment out.
set -euo pipefail

out="${1:?usage: make_certs.sh DIR [NUM_CLIENTS] [HOSTS]}"
clients="${2:-3}"
hosts="${3:-localhost,127.0.0.1}"
days=365

command -v openssl >/dev/null || { echo "make_certs.sh: openssl is not installed" >&2; exit 1; }
command -v ssh-keygen >/dev/null || { echo "make_certs.sh: ssh-keygen (openssh-client) is not installed" >&2; exit 1; }
mkdir -p "$out"

# The SuperLink's own helper processes reach it on 127.0.0.1, so the certificate always covers loopback.
[[ ",$hosts," == *",127.0.0.1,"* ]] || hosts="$hosts,127.0.0.1"
[[ ",$hosts," == *",localhost,"* ]] || hosts="$hosts,localhost"
san=""
IFS=',' read -ra names <<<"$hosts"
for h in "${names[@]}"; do
  if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san="${san%,}"

openssl req -x509 -newkey rsa:2048 -sha256 -days "$days" -nodes -subj "/CN=fedlora test CA" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=${names[0]}" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
  "$san" >"$out/server.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$out/server.ext" -out "$out/server.pem" 2>/dev/null
rm -f "$out/server.csr" "$out/server.ext" "$out/ca.srl"

for ((i = 0; i < clients; i++)); do
  rm -f "$out/client_$i" "$out/client_$i.pub"
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "fedlora client $i" -f "$out/client_$i"
done
chmod 600 "$out"/*.key "$out"/client_*[0-9]
echo "wrote $out: ca.crt, server.pem, server.key (hosts: $hosts) and $clients client key pairs"
