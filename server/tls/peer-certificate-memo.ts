// Every gRPC call asks its connection for the client's certificate (grpc-js getAuthContext), and
// Node's TLSSocket.getPeerCertificate() builds a new object for it each time: it parses the
// subject, issuer and names and hashes the certificate three times for its fingerprints. Under
// load that was 2.5-4.4% of a node's busy time (docs/performance.md). The peer certificate of a
// connection cannot change after its handshake: every listener and dialer here requires TLS 1.3,
// which has no renegotiation. So the first answer is kept for the life of the socket.

import { type PeerCertificate, TLSSocket } from "node:tls";

const memos = new WeakMap<TLSSocket, PeerCertificate>();
let installed = false;

/**
 * Makes getPeerCertificate() (the plain form, not the detailed chain) answer the same frozen
 * object for every call on one socket once its handshake has given one. Idempotent; a socket
 * that is not yet secured, or that negotiated less than TLS 1.3, is asked every time.
 */
export function memoizePeerCertificates(): void {
  if (installed) return;
  installed = true;
  const original = TLSSocket.prototype.getPeerCertificate;
  TLSSocket.prototype.getPeerCertificate = function getPeerCertificate(
    this: TLSSocket,
    detailed?: boolean,
  ): PeerCertificate {
    if (detailed === true) return original.call(this, true);
    const known = memos.get(this);
    if (known !== undefined) return known;
    const certificate = original.call(this, false);
    // An empty object means no certificate (yet); the protocol is null before the handshake.
    if (certificate.raw !== undefined && this.getProtocol() === "TLSv1.3") {
      memos.set(this, Object.freeze(certificate));
    }
    return certificate;
  } as typeof original;
}
