// gRPC credentials over TlsFiles: mutual TLS 1.3 on every listener and dialer, reloaded when the
// files change. A listener asks for and verifies the other side's certificate against its CA
// bundle before any RPC runs; who that is (node or client) is read from the verified certificate
// (identity.ts).

import {
  checkServerIdentity,
  createSecureContext,
  type PeerCertificate,
  type SecureContextOptions,
} from "node:tls";
import { type ChannelCredentials, credentials, ServerCredentials } from "@grpc/grpc-js";
import { type TlsFiles, type TlsMaterial, tlsMinVersion } from "./tls-files.js";

function contextOptions(material: TlsMaterial): SecureContextOptions {
  return { ca: material.ca, cert: material.certificate, key: material.privateKey, minVersion: tlsMinVersion };
}

/** Server credentials that require a client certificate signed by the listener's CA bundle. */
class ReloadingServerCredentials extends ServerCredentials {
  constructor(files: TlsFiles) {
    // requestCert + rejectUnauthorized: the handshake fails without a certificate from the CA.
    super(
      { requestCert: true, rejectUnauthorized: true, minVersion: tlsMinVersion },
      contextOptions(files.current()),
    );
    files.onChange((material) => this.updateSecureContextOptions(contextOptions(material)));
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

export function serverCredentials(files: TlsFiles): ServerCredentials {
  return new ReloadingServerCredentials(files);
}

/**
 * Credentials to dial with the current material (call again after a change: they are fixed at
 * creation). `expectedIdentity`, when given, must be satisfied by the server's certificate on top
 * of the usual host name check (for peers: the SAN URI of the node being dialled).
 */
export function channelCredentials(
  files: TlsFiles,
  expectedIdentity?: (certificate: PeerCertificate) => string | undefined,
): ChannelCredentials {
  const context = createSecureContext(contextOptions(files.current()));
  return credentials.createFromSecureContext(context, {
    checkServerIdentity(host, certificate) {
      const hostError = checkServerIdentity(host, certificate);
      if (hostError !== undefined) return hostError;
      const identityProblem = expectedIdentity?.(certificate);
      return identityProblem === undefined ? undefined : new Error(identityProblem);
    },
  });
}
