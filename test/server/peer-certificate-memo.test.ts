// The per-connection memo of the peer certificate: real TLS over loopback. One connection answers
// the same certificate however often it is asked; another connection, with another client's
// certificate, answers its own (a memo shared between connections would hand one client's
// identity to another); a TLS 1.2 connection, which could renegotiate, is asked every time.

import { once } from "node:events";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { connect, createServer, type SecureVersion, type TLSSocket } from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { clientIdentityOf } from "../../server/tls/identity.js";
import { memoizePeerCertificates } from "../../server/tls/peer-certificate-memo.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("memo");
afterAll(() => pki.cleanup());

/** A TLS server asking for client certificates; answers the server side of each connection. */
async function serve(maxVersion: SecureVersion) {
  const files = pki.node("n1", ["127.0.0.1"]);
  const accepted: TLSSocket[] = [];
  const server = createServer(
    {
      cert: readFileSync(files.certificateFile),
      key: readFileSync(files.privateKeyFile),
      ca: pki.clientCa.certificatePem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      maxVersion,
    },
    (socket) => accepted.push(socket),
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  const dial = async (client: string): Promise<{ server: TLSSocket; client: TLSSocket }> => {
    const clientFiles = pki.client(client);
    const socket = connect({
      host: "127.0.0.1",
      port,
      cert: readFileSync(clientFiles.certificateFile),
      key: readFileSync(clientFiles.privateKeyFile),
      ca: readFileSync(clientFiles.caFile),
      checkServerIdentity: () => undefined,
    });
    await once(socket, "secureConnect");
    // The server's side of the connection is accepted once its handshake is done.
    for (let i = 0; i < 100 && accepted.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const serverSide = accepted.shift();
    if (serverSide === undefined) throw new Error("the server accepted no connection");
    return { server: serverSide, client: socket };
  };
  const close = async (): Promise<void> => {
    server.close();
    await once(server, "close");
  };
  return { dial, close };
}

describe("memoizePeerCertificates", () => {
  memoizePeerCertificates();

  it("answers one frozen certificate per TLS 1.3 connection, and each connection its own", async () => {
    const server = await serve("TLSv1.3");
    try {
      const alice = await server.dial("alice");
      const bob = await server.dial("bob");
      const first = alice.server.getPeerCertificate();
      expect(alice.server.getProtocol()).toBe("TLSv1.3");
      expect(alice.server.getPeerCertificate()).toBe(first);
      expect(Object.isFrozen(first)).toBe(true);
      expect(clientIdentityOf(first, "uri-or-cn")).toBe("alice");
      const bobs = bob.server.getPeerCertificate();
      expect(bobs).not.toBe(first);
      expect(clientIdentityOf(bobs, "uri-or-cn")).toBe("bob");
      // The detailed form (with the issuer chain) is never memoized.
      expect(alice.server.getPeerCertificate(true)).not.toBe(first);
      alice.client.destroy();
      bob.client.destroy();
    } finally {
      await server.close();
    }
  });

  it("asks a TLS 1.2 connection every time", async () => {
    const server = await serve("TLSv1.2");
    try {
      const carol = await server.dial("carol");
      expect(carol.server.getProtocol()).toBe("TLSv1.2");
      const first = carol.server.getPeerCertificate();
      expect(clientIdentityOf(first, "uri-or-cn")).toBe("carol");
      expect(carol.server.getPeerCertificate()).not.toBe(first);
      carol.client.destroy();
    } finally {
      await server.close();
    }
  });
});
