// Certificates as operators meet them: the dev PKI's certificates verify with Node's TLS and name
// who they belong to; a bad certificate file fails at start with a message that says what is wrong;
// a rotated certificate is picked up without a restart, and a bad rotation is refused while the
// old certificate stays in use.

import { generateKeyPairSync, sign, X509Certificate } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import forge from "node-forge";
import { afterAll, describe, expect, it } from "vitest";
import { createCa } from "../../server/pki/certificate-authority.js";
import { createCertificateAuthority, issueNodeCertificate } from "../../server/tls/dev-pki.js";
import { clientIdentityOf, nodeIdOf } from "../../server/tls/identity.js";
import { readTlsMaterial, type TlsConfigError, TlsFiles } from "../../server/tls/tls-files.js";
import { TestPki } from "./pki-fixture.js";

const pki = new TestPki("tls");
afterAll(() => pki.cleanup());

describe("dev PKI", () => {
  it("issues node certificates signed by the cluster CA, naming the node and its addresses", () => {
    const paths = pki.node("n1", ["127.0.0.2", "node-1.example"]);
    const certificate = new X509Certificate(readFileSync(paths.certificateFile));
    const ca = new X509Certificate(pki.clusterCa.certificatePem);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    expect(certificate.checkIssued(ca)).toBe(true);
    expect(certificate.subjectAltName).toBe(
      "URI:strongroom://node/n1, IP Address:127.0.0.2, DNS:node-1.example",
    );
    expect(certificate.checkIP("127.0.0.2")).toBe("127.0.0.2");
    expect(certificate.checkHost("node-1.example")).toBe("node-1.example");
    expect(certificate.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(ca.ca).toBe(true);
  });

  it("issues client certificates signed by the client CA, for client authentication only", () => {
    const paths = pki.client("alice");
    const certificate = new X509Certificate(readFileSync(paths.certificateFile));
    expect(certificate.verify(new X509Certificate(pki.clientCa.certificatePem).publicKey)).toBe(true);
    expect(certificate.verify(new X509Certificate(pki.clusterCa.certificatePem).publicKey)).toBe(false);
    expect(certificate.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(certificate.subject).toContain("CN=alice");
  });

  it("makes P-256 keys, and a CA that outlives 2049 (its end as GeneralizedTime)", () => {
    const ca = createCertificateAuthority("long-lived CA", { validDays: 36_500 });
    const certificate = new X509Certificate(ca.certificatePem);
    expect(certificate.publicKey.asymmetricKeyType).toBe("ec");
    expect(certificate.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(certificate.ca).toBe(true);
    expect(certificate.checkIssued(certificate)).toBe(true);
    expect(certificate.verify(certificate.publicKey)).toBe(true);
    expect(new Date(certificate.validTo).getUTCFullYear()).toBeGreaterThan(2100);
    const leaf = new X509Certificate(
      issueNodeCertificate(ca, { nodeId: "n1", hosts: ["127.0.0.1"] }).certificatePem,
    );
    expect(leaf.publicKey.asymmetricKeyType).toBe("ec");
    expect(leaf.ca).toBe(false);
    // Issued by it: its name, and its key identifier (OpenSSL compares them), and its signature.
    expect(leaf.checkIssued(certificate)).toBe(true);
    expect(leaf.verify(certificate.publicKey)).toBe(true);
  });

  it("still issues from an RSA CA (the dev PKI's CAs before P-256)", async () => {
    const rsa = await createCa("older RSA CA", Date.now() + 86_400_000);
    const ca = new X509Certificate(rsa.certificatePem);
    expect(ca.publicKey.asymmetricKeyType).toBe("rsa");
    const leaf = new X509Certificate(
      issueNodeCertificate(rsa, { nodeId: "n2", hosts: ["127.0.0.1"] }).certificatePem,
    );
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe("URI:strongroom://node/n2, IP Address:127.0.0.1");
  });

  it("refuses to issue with a CA key that is not its certificate's", () => {
    const ca = createCertificateAuthority("one CA");
    const other = createCertificateAuthority("another CA");
    expect(() =>
      issueNodeCertificate(
        { certificatePem: ca.certificatePem, privateKeyPem: other.privateKeyPem },
        { nodeId: "n4", hosts: ["127.0.0.1"] },
      ),
    ).toThrow("the CA's private key does not belong to its certificate (another CA's key?)");
  });

  it("issues from a version 1 CA certificate (no version field before its serial)", () => {
    const ca = versionOneCa("old v1 CA");
    const caCertificate = new X509Certificate(ca.certificatePem);
    const leaf = new X509Certificate(
      issueNodeCertificate(ca, { nodeId: "n3", hosts: ["127.0.0.1"] }).certificatePem,
    );
    expect(leaf.issuer).toBe(caCertificate.subject);
    expect(leaf.verify(caCertificate.publicKey)).toBe(true);
  });
});

/**
 * A self-signed X.509 v1 certificate (as old tools made CAs): node-forge always writes a version
 * field, so its TBSCertificate is taken apart here, the field dropped, and signed again.
 */
function versionOneCa(commonName: string): { certificatePem: string; privateKeyPem: string } {
  const keys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = forge.pki.publicKeyFromPem(
    keys.publicKey.export({ type: "spki", format: "pem" }).toString(),
  );
  certificate.serialNumber = "01";
  certificate.validity.notBefore = new Date(Date.now() - 60_000);
  certificate.validity.notAfter = new Date(Date.now() + 86_400_000);
  certificate.setSubject([{ name: "commonName", value: commonName }]);
  certificate.setIssuer([{ name: "commonName", value: commonName }]);
  certificate.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption ?? "";
  // Not in node-forge's types; in its x509 module since 0.x.
  const { getTBSCertificate } = forge.pki as unknown as {
    getTBSCertificate(certificate: forge.pki.Certificate): forge.asn1.Asn1;
  };
  const tbs = getTBSCertificate(certificate);
  (tbs.value as forge.asn1.Asn1[]).shift();
  const tbsDer = forge.asn1.toDer(tbs).getBytes();
  const signature = sign("sha256", Buffer.from(tbsDer, "binary"), keys.privateKey).toString("binary");
  const { asn1 } = forge;
  const algorithm = (tbs.value as forge.asn1.Asn1[])[1] as forge.asn1.Asn1;
  const whole = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    algorithm,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature}`),
  ]);
  return {
    certificatePem: forge.pem.encode({ type: "CERTIFICATE", body: asn1.toDer(whole).getBytes() }),
    privateKeyPem: keys.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

describe("identities", () => {
  it("reads a node id and a client identity, and never one for the other", () => {
    expect(nodeIdOf({ subjectaltname: "URI:strongroom://node/n2, IP Address:127.0.0.1" } as never)).toBe(
      "n2",
    );
    expect(clientIdentityOf({ subjectaltname: "URI:strongroom://node/n2" } as never)).toBeNull();
    expect(clientIdentityOf({ subjectaltname: "URI:strongroom://client/alice" } as never)).toBe("alice");
    expect(nodeIdOf({ subjectaltname: "URI:strongroom://client/alice" } as never)).toBeNull();
    expect(clientIdentityOf({ subject: { CN: "build-bot" } } as never)).toBe("build-bot");
    expect(
      nodeIdOf({ subjectaltname: "URI:strongroom://node/n1, URI:strongroom://node/n2" } as never),
    ).toBeNull();
    expect(nodeIdOf({ subjectaltname: "URI:strongroom://node/../etc" } as never)).toBeNull();
    expect(nodeIdOf(null)).toBeNull();
  });

  it("takes a client's identity from the source the node is configured with", () => {
    const both = { subjectaltname: "URI:strongroom://client/alice", subject: { CN: "build-bot" } } as never;
    const cnOnly = { subject: { CN: "build-bot" } } as never;
    expect(clientIdentityOf(both, "uri-or-cn")).toBe("alice");
    expect(clientIdentityOf(both, "uri")).toBe("alice");
    expect(clientIdentityOf(both, "cn")).toBe("build-bot");
    expect(clientIdentityOf(cnOnly, "uri")).toBeNull();
    expect(clientIdentityOf(cnOnly, "uri-or-cn")).toBe("build-bot");
    expect(clientIdentityOf({ subject: { CN: "has space" } } as never, "cn")).toBeNull();
  });
});

describe("TLS files", () => {
  function errorOf(action: () => unknown): TlsConfigError {
    try {
      action();
    } catch (error) {
      return error as TlsConfigError;
    }
    throw new Error("no error");
  }

  it("names an expired certificate, one not yet valid, a key that does not fit, and a missing file", () => {
    const expired = pki.node("old", ["127.0.0.1"], {
      notBefore: new Date("2020-01-01T00:00:00Z"),
      notAfter: new Date("2021-01-01T00:00:00Z"),
    });
    expect(errorOf(() => readTlsMaterial(expired)).message).toBe(
      `the certificate ${expired.certificateFile} expired on 2021-01-01T00:00:00.000Z`,
    );
    const future = pki.node("future", ["127.0.0.1"], { notBefore: new Date(Date.now() + 86_400_000) });
    expect(errorOf(() => readTlsMaterial(future)).message).toMatch(
      /is not valid before .* \(clock skew\?\)$/,
    );
    const mismatched = { ...pki.node("a"), privateKeyFile: pki.node("b").privateKeyFile };
    expect(errorOf(() => readTlsMaterial(mismatched)).message).toMatch(
      new RegExp(`${mismatched.privateKeyFile} does not fit ${mismatched.certificateFile}`),
    );
    const missing = { ...pki.node("c"), caFile: "/nonexistent/ca.pem" };
    expect(errorOf(() => readTlsMaterial(missing)).message).toBe(
      "cannot read the CA bundle /nonexistent/ca.pem: ENOENT",
    );
  });

  it("picks up a rotated certificate, and keeps the old one when the new files are bad", () => {
    const paths = pki.node("rotating");
    const errors: string[] = [];
    const files = new TlsFiles(paths, { onReloadError: (error) => errors.push(error.message) });
    const changes: string[] = [];
    files.onChange((material) => changes.push(new X509Certificate(material.certificate).serialNumber));
    const first = new X509Certificate(files.current().certificate).serialNumber;

    const next = pki.node("rotating-next");
    copyFileSync(next.certificateFile, paths.certificateFile);
    copyFileSync(next.privateKeyFile, paths.privateKeyFile);
    files.reload();
    const second = new X509Certificate(files.current().certificate).serialNumber;
    expect(second).not.toBe(first);
    expect(changes).toEqual([second]);

    // Half a rotation: a new certificate whose key has not arrived yet.
    copyFileSync(pki.node("rotating-third").certificateFile, paths.certificateFile);
    files.reload();
    expect(new X509Certificate(files.current().certificate).serialNumber).toBe(second);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/does not fit/);
    // Seen again (each file's poll reloads): reported once.
    files.reload();
    expect(errors).toHaveLength(1);

    // The rotation completed as it was: nothing changes, nothing is reported.
    copyFileSync(next.certificateFile, paths.certificateFile);
    files.reload();
    expect(changes).toHaveLength(1);
    expect(errors).toHaveLength(1);
    writeFileSync(paths.caFile, "not a certificate");
    files.reload();
    expect(errors[1]).toMatch(/is not a PEM certificate/);
    // Refused, fixed, refused the same way again: a new refusal, reported.
    copyFileSync(next.caFile, paths.caFile);
    files.reload();
    writeFileSync(paths.caFile, "not a certificate");
    files.reload();
    expect(errors).toHaveLength(3);
    files.close();
  });

  it("many readers of the same files share one poll; closing one leaves the others polling", async () => {
    const paths = pki.node("shared");
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    try {
      // A node's listener, server and dialers, times the nodes of one test process.
      const readers = Array.from({ length: 12 }, () => new TlsFiles(paths, { pollIntervalMs: 20 }));
      const changed = readers.map(() => 0);
      readers.forEach((files, i) => {
        files.onChange(() => {
          changed[i] = (changed[i] ?? 0) + 1;
        });
      });
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain("MaxListenersExceededWarning");

      readers[0]?.close();
      readers[0]?.close();
      const next = pki.node("shared-next");
      copyFileSync(next.certificateFile, paths.certificateFile);
      copyFileSync(next.privateKeyFile, paths.privateKeyFile);
      const deadline = Date.now() + 5000;
      while (changed.slice(1).some((count) => count === 0) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(changed[0]).toBe(0);
      expect(changed.slice(1).every((count) => count >= 1)).toBe(true);
      const serial = new X509Certificate(readFileSync(next.certificateFile)).serialNumber;
      for (const files of readers.slice(1))
        expect(new X509Certificate(files.current().certificate).serialNumber).toBe(serial);
      for (const files of readers) files.close();
    } finally {
      process.off("warning", onWarning);
    }
  });
});
