#!/usr/bin/env bash
# Makes the certificates a strongroom StatefulSet needs and prints them as the Secret
# `strongroom-tls` (YAML, on stdout):
#
#   deploy/kubernetes/make-tls-secret.sh NAMESPACE [REPLICAS] [DIR] > tls-secret.yaml
#
# DIR (default ./strongroom-pki) keeps the two CAs and their keys, and an operator's client
# certificate (`admin`): keep it offline. The Secret holds the CA certificates and each node's
# certificate and key, never a CA key. A node's certificate names it (strongroom://node/<pod>) and
# every name it is reached at: strongroom-N.strongroom-peer[.NAMESPACE[.svc[.cluster.local]]] and
# the client Service. With an organization's own CA, make the same files and the same Secret.
set -euo pipefail

namespace="${1:?usage: make-tls-secret.sh NAMESPACE [REPLICAS] [DIR]}"
replicas="${2:-3}"
dir="${3:-./strongroom-pki}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
# The CLI of this checkout (npm ci builds it), or STRONGROOM="strongroom" for an installed one.
read -r -a strongroom <<<"${STRONGROOM:-node $repo/bin/strongroom.js}"

if ! [[ "$replicas" =~ ^[1-7]$ ]]; then
  echo "make-tls-secret.sh: REPLICAS must be 1 to 7, not '$replicas'" >&2
  exit 2
fi
if ! [[ "$namespace" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]; then
  echo "make-tls-secret.sh: '$namespace' is not a Kubernetes namespace name" >&2
  exit 2
fi

mkdir -p "$dir"
[ -f "$dir/cluster-ca-key.pem" ] || "${strongroom[@]}" pki ca --dir "$dir" >/dev/null
files=(cluster-ca.pem client-ca.pem)
for ((i = 0; i < replicas; i++)); do
  pod="strongroom-$i"
  hosts=()
  for name in "$pod.strongroom-peer" "$pod.strongroom-peer.$namespace" "$pod.strongroom-peer.$namespace.svc" \
    "$pod.strongroom-peer.$namespace.svc.cluster.local" strongroom "strongroom.$namespace" \
    "strongroom.$namespace.svc" "strongroom.$namespace.svc.cluster.local" localhost; do
    hosts+=(--host "$name")
  done
  [ -f "$dir/$pod.pem" ] || "${strongroom[@]}" pki node "$pod" --dir "$dir" "${hosts[@]}" >/dev/null
  files+=("$pod.pem" "$pod-key.pem")
done
[ -f "$dir/admin.pem" ] || "${strongroom[@]}" pki client admin --dir "$dir" >/dev/null

echo "apiVersion: v1"
echo "kind: Secret"
echo "metadata:"
echo "  name: strongroom-tls"
echo "  namespace: $namespace"
echo "type: Opaque"
echo "data:"
for file in "${files[@]}"; do
  echo "  $file: $(base64 -w0 <"$dir/$file")"
done
echo "make-tls-secret.sh: CAs, keys and the admin client certificate are in $dir" >&2
