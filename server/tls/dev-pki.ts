// A development PKI: two CAs (the cluster CA for nodes, the client CA for clients), node
// certificates that name their node in a SAN URI and cover every address it is reached at, and
// client certificates. Generation only, with node-forge for the X.509 structures and Node's crypto
// for the keys; every certificate is verified by Node's TLS, never by node-forge, and node-forge
// never parses anything that came from outside (only what this module just made).

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";
import { makeSelfSignedCa } from "../pki/certificate-authority.js";
import { checkCertificateName } from "../pki/pki-records.js";
import { clientIdentityUri, nodeIdentityUri } from "./identity.js";

export interface PemPair {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export interface Validity {
  /** Default: one minute ago (a little clock skew between machines is fine). */
  readonly notBefore?: Date;
  /** Default: `validDays` after notBefore. */
  readonly notAfter?: Date;
  readonly validDays?: number;
}

const defaultValidDays = 365;
const rsaModulusBits = 2048;

export function createCertificateAuthority(commonName: string, validity: Validity = {}): PemPair {
  const { publicKey, privateKey } = newKeyPair();
  const certificate = newCertificate(publicKey, validity);
  makeSelfSignedCa(certificate, commonName, privateKey);
  return pemPair(certificate, privateKey);
}

export interface NodeCertificateOptions extends Validity {
  readonly nodeId: string;
  /** Every DNS name and IP address the node is reached at (its SANs). */
  readonly hosts: readonly string[];
}

/** A node's certificate: server and client authentication (it both accepts and dials peers). */
export function issueNodeCertificate(authority: PemPair, options: NodeCertificateOptions): PemPair {
  const altNames = [
    { type: 6, value: nodeIdentityUri(options.nodeId) },
    ...options.hosts
      .map(checkCertificateName)
      .map((host) => (isIP(host) === 0 ? { type: 2, value: host } : { type: 7, ip: host })),
  ];
  return issue(
    authority,
    `strongroom node ${options.nodeId}`,
    altNames,
    { serverAuth: true, clientAuth: true },
    options,
  );
}

export interface ClientCertificateOptions extends Validity {
  /** The client's identity: its subject CN and a SAN URI strongroom://client/<name>. */
  readonly name: string;
}

export function issueClientCertificate(authority: PemPair, options: ClientCertificateOptions): PemPair {
  return issue(
    authority,
    options.name,
    [{ type: 6, value: clientIdentityUri(options.name) }],
    { clientAuth: true },
    options,
  );
}

function issue(
  authority: PemPair,
  commonName: string,
  altNames: readonly object[],
  extendedKeyUsage: { serverAuth?: boolean; clientAuth?: boolean },
  validity: Validity,
): PemPair {
  const caCertificate = forge.pki.certificateFromPem(authority.certificatePem);
  const caKey = forge.pki.privateKeyFromPem(authority.privateKeyPem);
  const { publicKey, privateKey } = newKeyPair();
  const certificate = newCertificate(publicKey, validity);
  certificate.setSubject([
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "strongroom" },
  ]);
  certificate.setIssuer(caCertificate.subject.attributes);
  certificate.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", ...extendedKeyUsage },
    { name: "subjectAltName", altNames },
    { name: "subjectKeyIdentifier" },
    {
      name: "authorityKeyIdentifier",
      keyIdentifier: caCertificate.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  certificate.sign(caKey, forge.md.sha256.create());
  return pemPair(certificate, privateKey);
}

function newKeyPair(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey } {
  // Node's crypto makes the key (fast, native); node-forge only reads the PEM it just produced.
  const pair = generateKeyPairSync("rsa", {
    modulusLength: rsaModulusBits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey),
    privateKey: forge.pki.privateKeyFromPem(pair.privateKey) as forge.pki.rsa.PrivateKey,
  };
}

function newCertificate(publicKey: forge.pki.rsa.PublicKey, validity: Validity): forge.pki.Certificate {
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  // A positive serial whose first byte is never 0: the high bit cleared so DER does not read it as
  // negative, a low bit set so it is never a leading zero (OpenSSL refuses such padding).
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x10;
  certificate.serialNumber = serial.toString("hex");
  const notBefore = validity.notBefore ?? new Date(Date.now() - 60_000);
  const days = validity.validDays ?? defaultValidDays;
  certificate.validity.notBefore = notBefore;
  certificate.validity.notAfter = validity.notAfter ?? new Date(notBefore.getTime() + days * 86_400_000);
  return certificate;
}

function pemPair(certificate: forge.pki.Certificate, privateKey: forge.pki.rsa.PrivateKey): PemPair {
  return {
    certificatePem: forge.pki.certificateToPem(certificate),
    privateKeyPem: forge.pki.privateKeyInfoToPem(
      forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(privateKey)),
    ),
  };
}
