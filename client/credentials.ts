// How the SDK (and the CLI) authenticate: mutual TLS with a client certificate, and optionally a
// token sent as `authorization: Bearer <token>` with every call.

import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { checkServerIdentity, createSecureContext, type SecureContext } from "node:tls";
import { type ChannelCredentials, type ChannelOptions, credentials, Metadata } from "@grpc/grpc-js";

/** PEM contents of the CA bundle of the nodes' certificates, the client certificate and its key. */
export interface ClientTls {
  readonly ca: string | Buffer;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** The same, as files. */
export interface ClientTlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** How the channel to one endpoint connects: its credentials and the channel options they need. */
export interface EndpointTls {
  readonly credentials: ChannelCredentials;
  readonly options: ChannelOptions;
}

/**
 * The TLS server name sent to a node dialled by IP address. grpc-js sends the address itself,
 * which Node deprecates (DEP0123: a warning in the application's log); nodes do not look at the
 * name, and the certificate is still checked against the address.
 */
const serverNameForAddresses = "strongroom";

/**
 * Mutual TLS for each endpoint, from one secure context: an endpoint given by IP address gets its
 * certificate checked against that address under a server name that is not one.
 */
export function tlsCredentials(tls: ClientTls | ClientTlsFiles): (address: string) => EndpointTls {
  const context = secureContext(tls);
  return (address) => {
    const host = address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    if (isIP(host) === 0) return { credentials: credentials.createFromSecureContext(context), options: {} };
    return {
      credentials: credentials.createFromSecureContext(context, {
        checkServerIdentity: (_serverName, certificate) => checkServerIdentity(host, certificate),
      }),
      options: { "grpc.ssl_target_name_override": serverNameForAddresses },
    };
  };
}

/** A TLS file's bytes; one that cannot be read is an error naming what it is and where. */
function readTlsFile(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read ${what} ${file}: ${(error as Error).message}`, { cause: error });
  }
}

function secureContext(tls: ClientTls | ClientTlsFiles): SecureContext {
  const material =
    "caFile" in tls
      ? {
          ca: readTlsFile("the CA bundle (tls.caFile)", tls.caFile),
          cert: readTlsFile("the client certificate (tls.certFile)", tls.certFile),
          key: readTlsFile("the client key (tls.keyFile)", tls.keyFile),
        }
      : tls;
  let context: SecureContext;
  try {
    context = createSecureContext({
      ca: material.ca,
      cert: material.cert,
      key: material.key,
      minVersion: "TLSv1.3",
    });
  } catch (error) {
    // OpenSSL's words ("key values mismatch", "no start line"), with the files they are about.
    const files = "caFile" in tls ? ` (${tls.certFile}, ${tls.keyFile})` : "";
    const code = (error as { code?: string }).code;
    if (code === "ERR_OSSL_X509_KEY_VALUES_MISMATCH")
      throw new Error(`the client key does not match the client certificate${files}`, { cause: error });
    throw new Error(
      `the client certificate or key cannot be read as PEM${files}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  return context;
}

/**
 * Channel credentials that also send a token with every call (`authorization: Bearer <token>`),
 * read at each call so a holder can switch tokens; none while `token()` is null.
 */
export function withToken(channel: ChannelCredentials, token: () => string | null): ChannelCredentials {
  const perCall = credentials.createFromMetadataGenerator((_target, callback) => {
    const metadata = new Metadata();
    const current = token();
    if (current !== null && current !== "") metadata.set("authorization", `Bearer ${current}`);
    callback(null, metadata);
  });
  return credentials.combineChannelCredentials(channel, perCall);
}
