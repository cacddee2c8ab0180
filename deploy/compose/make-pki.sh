#!/bin/sh
# Run once by the compose file's `pki` service (as root, in the strongroom image): the two CAs, a
# certificate per node naming its compose host and localhost, and the operator's client
# certificate `admin`, into the `pki` volume. Existing files are kept, so a restart reuses them.
set -eu
# (PKI_DIR and STRONGROOM are for the tests, which run it outside the image.)
dir="${PKI_DIR:-/pki}"
strongroom="${STRONGROOM:-node /app/bin/strongroom.js}"
[ -f "$dir/cluster-ca-key.pem" ] || $strongroom pki ca --dir "$dir" >/dev/null
for node in strongroom-1 strongroom-2 strongroom-3; do
  [ -f "$dir/$node.pem" ] || $strongroom pki node "$node" --dir "$dir" --host "$node" --host localhost --host 127.0.0.1 >/dev/null
done
[ -f "$dir/admin.pem" ] || $strongroom pki client admin --dir "$dir" >/dev/null
# The nodes run as uid 10001 and read their keys; the CA keys stay readable by root only.
chown 10001:10001 "$dir"/strongroom-*.pem "$dir"/admin*.pem "$dir"/*-ca.pem
chmod 0600 "$dir"/*-key.pem
echo "pki ready in the volume: $(ls "$dir" | tr '\n' ' ')"
