// The PKI engine's X.509 work, checked by what consumers use: Node's X509Certificate, OpenSSL's
// `crl` command, and a real TLS handshake that takes the CRL.

import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer } from "node:tls";
import { beforeAll, describe, expect, it } from "vitest";
import {
  createCa,
  type IssuedCertificate,
  issueLeaf,
  serialOf,
  signCrl,
} from "../../server/pki/certificate-authority.js";

const hour = 3_600_000;
let ca: IssuedCertificate;
let revokedLeaf: IssuedCertificate;
let goodLeaf: IssuedCertificate;
let server: IssuedCertificate;
let otherCa: IssuedCertificate;
let otherLeaf: IssuedCertificate;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([
    createCa("test internal CA", Date.now() + 24 * hour),
    createCa("another CA", Date.now() + 24 * hour),
  ]);
  [revokedLeaf, goodLeaf, server] = await Promise.all([
    issueLeaf(ca, { commonName: "worker-1", dnsNames: [], notAfter: Date.now() + hour, serverAuth: false }),
    issueLeaf(ca, { commonName: "worker-2", dnsNames: [], notAfter: Date.now() + hour, serverAuth: false }),
    issueLeaf(ca, {
      commonName: "api.svc.test",
      dnsNames: ["api.internal.test"],
      notAfter: Date.now() + hour,
      serverAuth: true,
    }),
  ]);
  otherLeaf = await issueLeaf(otherCa, {
    commonName: "worker-1",
    dnsNames: [],
    notAfter: Date.now() + hour,
    serverAuth: false,
  });
}, 60_000);

describe("the internal CA", () => {
  it("makes a CA certificate that can sign certificates, and leaves that verify against it", () => {
    const caCertificate = new X509Certificate(ca.certificatePem);
    expect(caCertificate.ca).toBe(true);
    expect(caCertificate.subject).toContain("CN=test internal CA");
    const leaf = new X509Certificate(server.certificatePem);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(caCertificate)).toBe(true);
    expect(leaf.verify(caCertificate.publicKey)).toBe(true);
    expect(leaf.checkHost("api.internal.test")).toBe("api.internal.test");
    expect(leaf.checkHost("api.svc.test")).toBe("api.svc.test");
    expect(leaf.checkHost("other.test")).toBeUndefined();
    expect(leaf.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(new X509Certificate(goodLeaf.certificatePem).keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(leaf.serialNumber.toLowerCase()).toBe(server.serial);
    expect(serialOf(server.certificatePem)).toBe(server.serial);
    expect(new Date(leaf.validTo).getTime()).toBe(Math.floor(server.notAfter / 1000) * 1000);
  });

  it("gives every certificate its own serial and key", () => {
    expect(new Set([ca.serial, revokedLeaf.serial, goodLeaf.serial, server.serial]).size).toBe(4);
    expect(revokedLeaf.privateKeyPem).not.toBe(goodLeaf.privateKeyPem);
    expect(revokedLeaf.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });
});

describe("the revocation list", () => {
  it("is a CRL OpenSSL verifies against the CA and reads the revoked serials from", () => {
    const directory = mkdtempSync(join(tmpdir(), "strongroom-crl-"));
    const now = Date.now();
    const crl = signCrl(ca, [{ serial: revokedLeaf.serial, revokedAt: now }], now, now + hour, 7);
    writeFileSync(join(directory, "ca.pem"), ca.certificatePem);
    writeFileSync(join(directory, "crl.pem"), crl);
    const text = execFileSync(
      "openssl",
      ["crl", "-in", join(directory, "crl.pem"), "-CAfile", join(directory, "ca.pem"), "-noout", "-text"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(text).toMatch(/Version 2/);
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*7/);
    expect(text.replace(/\s/g, "").toLowerCase()).toContain(`serialnumber:${revokedLeaf.serial}`);
    expect(text.toLowerCase()).not.toContain(goodLeaf.serial);
    const verified = execFileSync(
      "openssl",
      ["crl", "-in", join(directory, "crl.pem"), "-CAfile", join(directory, "ca.pem"), "-noout"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(verified).toBe("");
    // A list signed by another CA does not verify against this one.
    writeFileSync(join(directory, "other-crl.pem"), signCrl(otherCa, [], now, now + hour, 1));
    expect(() =>
      execFileSync(
        "openssl",
        ["crl", "-in", join(directory, "other-crl.pem"), "-CAfile", join(directory, "ca.pem"), "-noout"],
        { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
      ),
    ).toThrow(/Error getting CRL issuer certificate/);
  });

  it("makes a TLS server that takes it refuse the revoked client certificate and accept the other", async () => {
    const now = Date.now();
    const crl = signCrl(ca, [{ serial: revokedLeaf.serial, revokedAt: now }], now, now + hour, 2);
    const listener = createServer({
      key: server.privateKeyPem,
      cert: server.certificatePem,
      ca: ca.certificatePem,
      crl,
      requestCert: true,
      // Verified, but answered either way, so that the test reads the reason the server found.
      rejectUnauthorized: false,
    });
    listener.on("secureConnection", (socket) =>
      socket.end(socket.authorized ? "hello" : `refused: ${String(socket.authorizationError)}`),
    );
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const port = (listener.address() as { port: number }).port;
    const handshake = (client: IssuedCertificate) =>
      new Promise<string>((resolve) => {
        const socket = connect({
          host: "127.0.0.1",
          port,
          servername: "api.svc.test",
          ca: ca.certificatePem,
          key: client.privateKeyPem,
          cert: client.certificatePem,
        });
        let received = "";
        socket.on("data", (data) => {
          received += data.toString();
        });
        socket.on("end", () => resolve(received === "" ? "closed" : received));
        socket.on("error", (error) => resolve(`error: ${error.message}`));
      });
    try {
      expect(await handshake(goodLeaf)).toBe("hello");
      expect(await handshake(revokedLeaf)).toBe("refused: CERT_REVOKED");
      expect(await handshake(otherLeaf)).toBe("refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    } finally {
      listener.close();
    }
  });
});

it("writes PEM with LF line ends, as Node and OpenSSL do, so bundles concatenate cleanly", () => {
  const now = Date.now();
  for (const pem of [ca.certificatePem, goodLeaf.certificatePem, signCrl(ca, [], now, now + hour, 1)]) {
    expect(pem).not.toContain("\r");
    expect(pem.endsWith("-----\n")).toBe(true);
  }
});
