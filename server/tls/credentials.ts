// gRPC credentials over TlsFiles: mutual TLS 1.3 on every listener and dialer, reloaded when the
// files change. A listener asks for and verifies the other side's certificate against its CA
// bundle before any RPC runs; who that is (node or client) is read from the verified certificate
// (identity.ts).

import { isIP } from "node:net";
import {
  checkServerIdentity,
  createSecureContext,
  type PeerCertificate,
  type SecureContextOptions,
} from "node:tls";
import {
  type ChannelCredentials,
  type ChannelOptions,
  credentials,
  ServerCredentials,
  type VerifyOptions,
} from "@grpc/grpc-js";
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
 * The TLS server name sent to a node dialled by IP address. grpc-js would send the address itself,
 * which Node deprecates (DEP0123: a warning on the first such connection of every process); nodes
 * do not look at the name, and the certificate is still checked against the address. The SDK does
 * the same (client/credentials.ts).
 */
const serverNameForAddresses = "strongroom";

/** How to dial one address: the credentials, and the channel options they need. */
export interface DialTls {
  readonly credentials: ChannelCredentials;
  readonly options: ChannelOptions;
}

/** How a dial to one address checks the server and names it: for credentials made by hand too. */
export interface DialIdentity {
  readonly verify: VerifyOptions;
  readonly options: ChannelOptions;
}

/**
 * The server's certificate must name the host of `address` (host:port; an IP address among its IP
 * SANs); `expectedIdentity`, when given, must be satisfied too (for peers: the SAN URI of the node
 * being dialled). An IP address is not sent as the server name (serverNameForAddresses).
 */
export function dialIdentity(
  address: string,
  expectedIdentity?: (certificate: PeerCertificate) => string | undefined,
): DialIdentity {
  const host = address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const byAddress = isIP(host) !== 0;
  return {
    verify: {
      checkServerIdentity(serverName, certificate) {
        const hostError = checkServerIdentity(byAddress ? host : serverName, certificate);
        if (hostError !== undefined) return hostError;
        const identityProblem = expectedIdentity?.(certificate);
        return identityProblem === undefined ? undefined : new Error(identityProblem);
      },
    },
    options: byAddress ? { "grpc.ssl_target_name_override": serverNameForAddresses } : {},
  };
}

/**
 * Credentials to dial `address` with the current material (call again after a change: they are
 * fixed at creation), checked as dialIdentity says.
 */
export function dialTls(
  files: TlsFiles,
  address: string,
  expectedIdentity?: (certificate: PeerCertificate) => string | undefined,
): DialTls {
  const identity = dialIdentity(address, expectedIdentity);
  const context = createSecureContext(contextOptions(files.current()));
  return {
    credentials: credentials.createFromSecureContext(context, identity.verify),
    options: identity.options,
  };
}
