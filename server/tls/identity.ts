// Who is on the other end of a TLS connection, read from the certificate Node's TLS verified: a
// node names itself with the SAN URI strongroom://node/<id>, a client with
// strongroom://client/<name> or its subject CN, as the node's config says (auth.identitySource). A peer certificate is never a
// client identity and a client certificate never a node: each listener trusts only its own CA, and
// these functions also refuse the other kind's URI.

import type { PeerCertificate } from "node:tls";
import { NodeError } from "../errors.js";

const nodeUriPrefix = "strongroom://node/";
const clientUriPrefix = "strongroom://client/";
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function nodeIdentityUri(nodeId: string): string {
  return nodeUriPrefix + checkedName(nodeId, "node id");
}

export function clientIdentityUri(name: string): string {
  return clientUriPrefix + checkedName(name, "client name");
}

/** The node id a verified peer certificate names, or null when it names none (or two). */
export function nodeIdOf(certificate: PeerCertificate | null | undefined): string | null {
  const ids = urisOf(certificate).filter((uri) => uri.startsWith(nodeUriPrefix));
  if (ids.length !== 1 || urisOf(certificate).some((uri) => uri.startsWith(clientUriPrefix))) return null;
  const id = (ids[0] ?? "").slice(nodeUriPrefix.length);
  return namePattern.test(id) ? id : null;
}

/**
 * Where a client's identity comes from: "uri", its strongroom://client/<name> SAN URI; "cn", its
 * subject CN; "uri-or-cn", the URI when it has one, else the CN.
 */
export type IdentitySource = "uri-or-cn" | "uri" | "cn";

/** The client identity of a verified client certificate, or null when it names none (or two). */
export function clientIdentityOf(
  certificate: PeerCertificate | null | undefined,
  source: IdentitySource = "uri-or-cn",
): string | null {
  const uris = urisOf(certificate);
  if (uris.some((uri) => uri.startsWith(nodeUriPrefix))) return null;
  const named = uris.filter((uri) => uri.startsWith(clientUriPrefix));
  if (named.length > 1) return null;
  const fromUri = named.length === 1 ? (named[0] ?? "").slice(clientUriPrefix.length) : null;
  const fromCn = certificate?.subject?.CN ?? null;
  const name = source === "uri" ? fromUri : source === "cn" ? fromCn : (fromUri ?? fromCn);
  return typeof name === "string" && namePattern.test(name) ? name : null;
}

export function checkedName(name: string, what: string): string {
  if (!namePattern.test(name)) {
    throw new Error(
      `a ${what} is 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit: got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

/** The URIs of the certificate's subjectAltName ("URI:a, DNS:b, IP Address:c"). */
function urisOf(certificate: PeerCertificate | null | undefined): string[] {
  const altNames = certificate?.subjectaltname ?? "";
  return altNames
    .split(", ")
    .filter((entry) => entry.startsWith("URI:"))
    .map((entry) => entry.slice(4));
}

/** The client identity of a call's verified certificate, or an UNAUTHENTICATED error. */
export function requireClientIdentity(
  certificate: PeerCertificate | null | undefined,
  source: IdentitySource = "uri-or-cn",
): string {
  const identity = clientIdentityOf(certificate, source);
  if (identity === null) {
    const where = source === "uri" ? "SAN URI" : source === "cn" ? "subject CN" : "SAN URI or subject CN";
    throw new NodeError(
      "UNAUTHENTICATED",
      `the client certificate names no client identity (in its ${where}, as this node reads it)`,
    );
  }
  return identity;
}
