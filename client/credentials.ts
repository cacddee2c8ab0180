// How the SDK (and the CLI) authenticate: mutual TLS with a client certificate, and optionally a
// token sent as `authorization: Bearer <token>` with every call.

import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import { type ChannelCredentials, credentials, Metadata } from "@grpc/grpc-js";

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

export function tlsCredentials(tls: ClientTls | ClientTlsFiles): ChannelCredentials {
  const material =
    "caFile" in tls
      ? { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }
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
  return credentials.createFromSecureContext(context);
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
