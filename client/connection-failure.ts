// What a failed connection means, in words a person setting up mutual TLS can act on. grpc-js
// reports it as "No connection established. Last error: <Node's error> (<time>). Resolution note:
// …"; the error inside is OpenSSL's or the socket's ("unable to verify the first certificate",
// "read ECONNRESET"). The first names the cause on our side; a node that refuses the client's
// certificate only closes the connection (TLS 1.3 checks it after the handshake), so that one
// can only be suggested. (server/peer/peer-diagnosis.ts says the same of a node's peers.)

const lastError =
  /^No connection established\. Last error: (?:Error(?: \[[A-Z0-9_]+\])?: )?(.*?)(?: \(\d{4}-\d\d-\d\dT[^)]*\))?\.?(?: Resolution note:.*)?$/s;

const explanations: readonly [RegExp, string][] = [
  [
    /unable to verify the first certificate|self-signed certificate|unable to get local issuer certificate/,
    "the node's certificate is not signed by a CA in the client's CA bundle (STRONGROOM_CACERT, --cacert, tls.caFile)",
  ],
  [/certificate has expired/, "the node's certificate has expired"],
  [
    /certificate is not yet valid/,
    "the node's certificate is not valid yet (is this machine's clock right?)",
  ],
  [/does not match certificate's altnames/, "the node's certificate does not name the address used"],
  [/ECONNREFUSED/, "nothing listens there (is the node running, and is the address right?)"],
  [/ENOTFOUND|EAI_AGAIN/, "the host name does not resolve"],
  [
    /ECONNRESET|Failed to connect|socket disconnected|alert/,
    "the node closed the connection; it may not accept this client's certificate (is it signed by the cluster's client CA, and current?)",
  ],
];

/**
 * Node 24 adds this to a certificate it cannot verify. The client trusts the CA bundle it is given,
 * never the system's, so the hint would send a person the wrong way.
 */
const systemCaHint = /; if the root CA is installed locally, try running Node\.js with --use-system-ca/;

/** A connection failure's details said plainly, or the details unchanged when they are not one. */
export function describeConnectionFailure(details: string, endpoint: string): string {
  const match = lastError.exec(details);
  if (match === null) return details;
  const cause = (match[1] ?? "").replace(systemCaHint, "");
  const explanation = explanations.find(([pattern]) => pattern.test(cause))?.[1];
  return `cannot connect to ${endpoint}: ${cause}${explanation === undefined ? "" : `: ${explanation}`}`;
}
