// Why a peer cannot be reached, in words an operator can act on. Joining a node is where TLS
// mistakes show (Vault users' top complaint): gRPC reports them as "No connection established.
// Last error: ..." with OpenSSL's wording; this names the cause and the fix.

export function explainPeerFailure(peer: string, address: string, details: string): string {
  const where = `${peer} at ${address}`;
  if (/ECONNREFUSED/.test(details))
    return `${where} refuses connections: is it running, and is the address right?`;
  if (/ECONNRESET|EPIPE|Connection dropped|socket hang up/.test(details)) {
    return `${where} closed the connection (it stopped, or restarted)`;
  }
  if (/ENOTFOUND|EAI_AGAIN/.test(details)) return `${where}: the host name does not resolve`;
  if (/not in the cert's list|does not match certificate's altnames/.test(details)) {
    return `${where}: its certificate has no SAN for the address used; reissue it with that IP address or DNS name`;
  }
  if (/certificate has expired/.test(details)) return `${where}: its certificate has expired; reissue it`;
  if (/certificate is not yet valid/.test(details))
    return `${where}: its certificate is not valid yet (clock skew?)`;
  if (
    /self.signed|unable to get local issuer|unable to verify the first certificate|unknown ca/i.test(details)
  ) {
    return `${where}: its certificate is not signed by a CA this node trusts (tls.peer.caFile must hold the cluster CA)`;
  }
  if (/names node/.test(details)) return `${where}: ${details.replace(/^.*?(the certificate at)/, "$1")}`;
  if (/alert|certificate required|bad certificate|certificate unknown/i.test(details)) {
    return `${where} refused this node's certificate: it must be signed by the cluster CA that ${peer} trusts, name this node (SAN URI strongroom://node/<id>) and be valid now`;
  }
  return `${where}: ${details}`;
}
