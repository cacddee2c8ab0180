// A development PKI: two CAs (the cluster CA for nodes, the client CA for clients), node
// certificates that name their node in a SAN URI and cover every address it is reached at, and
// client certificates. Generation only. Keys are ECDSA P-256, made and used by Node's crypto: an
// RSA-2048 key took 150-550 ms to make, on the thread that asked (the test suite made about 400,
// a minute of its time), a P-256 key takes well under a millisecond. node-forge has no ECDSA, so
// it only encodes: the certificate's DER is put together here with its ASN.1 encoder and its
// extension encoders, and signed with Node's crypto. Every certificate is verified by Node's TLS,
// never by node-forge; node-forge parses only the CA certificate given to issue from (the
// operator's own file), for its subject name.

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";
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
const { asn1 } = forge;
const oids = {
  commonName: "2.5.4.3",
  organizationName: "2.5.4.10",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  sha256WithRsaEncryption: "1.2.840.113549.1.1.11",
} as const;

export function createCertificateAuthority(commonName: string, validity: Validity = {}): PemPair {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const subject = distinguishedName(commonName);
  const certificate = signedCertificate({
    subject,
    issuer: subject,
    publicKey,
    signingKey: privateKey,
    validity,
    extensions: [
      // No intermediate below it: it signs leaves only.
      { name: "basicConstraints", cA: true, critical: true, pathLenConstraint: 0 },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
      subjectKeyIdentifier(publicKey),
    ],
  });
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
  // A CA made before P-256 (RSA) still signs: signedCertificate names its algorithm.
  const caKey = createPrivateKey(authority.privateKeyPem);
  // Files mixed up (another CA's key beside this certificate) would sign what no one can verify.
  if (!new X509Certificate(authority.certificatePem).checkPrivateKey(caKey))
    throw new Error("the CA's private key does not belong to its certificate (another CA's key?)");
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const certificate = signedCertificate({
    subject: distinguishedName(commonName),
    issuer: subjectOf(authority.certificatePem),
    publicKey,
    signingKey: caKey,
    validity,
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      // An ECDSA key signs (the TLS handshake); it enciphers no key.
      { name: "keyUsage", digitalSignature: true, critical: true },
      { name: "extKeyUsage", ...extendedKeyUsage },
      { name: "subjectAltName", altNames },
      subjectKeyIdentifier(publicKey),
      {
        name: "authorityKeyIdentifier",
        keyIdentifier: keyIdentifier(createPublicKey(caKey)).toString("binary"),
      },
    ],
  });
  return pemPair(certificate, privateKey);
}

interface CertificateFields {
  readonly subject: forge.asn1.Asn1;
  readonly issuer: forge.asn1.Asn1;
  readonly publicKey: KeyObject;
  readonly signingKey: KeyObject;
  readonly validity: Validity;
  /** In node-forge's form (what Certificate.setExtensions takes). */
  readonly extensions: readonly object[];
}

/** The certificate's DER (RFC 5280, 4.1): its TBSCertificate, signed with `signingKey`. */
function signedCertificate(fields: CertificateFields): Buffer {
  const notBefore = fields.validity.notBefore ?? new Date(Date.now() - 60_000);
  const days = fields.validity.validDays ?? defaultValidDays;
  const notAfter = fields.validity.notAfter ?? new Date(notBefore.getTime() + days * 86_400_000);
  const algorithm = signatureAlgorithm(fields.signingKey);
  const tbs = sequence([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [integer(asn1.integerToDer(2).getBytes())]),
    integer(serialNumber()),
    algorithm,
    fields.issuer,
    sequence([time(notBefore), time(notAfter)]),
    fields.subject,
    fromDer(fields.publicKey.export({ type: "spki", format: "der" })),
    extensionsAsn1(fields.extensions),
  ]);
  const tbsDer = toDer(tbs);
  // ECDSA: the DER Ecdsa-Sig-Value X.509 wants (Node's default encoding); RSA: PKCS#1 v1.5.
  const signature = sign("sha256", tbsDer, fields.signingKey);
  return toDer(
    sequence([
      tbs,
      algorithm,
      // No unused bits.
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString("binary")}`),
    ]),
  );
}

/** ecdsa-with-SHA256 with no parameters (RFC 5758), or sha256WithRSAEncryption with NULL ones. */
function signatureAlgorithm(key: KeyObject): forge.asn1.Asn1 {
  if (key.asymmetricKeyType === "ec") return sequence([oid(oids.ecdsaWithSha256)]);
  if (key.asymmetricKeyType === "rsa")
    return sequence([
      oid(oids.sha256WithRsaEncryption),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ""),
    ]);
  throw new Error(`a CA key of type ${key.asymmetricKeyType ?? "unknown"} cannot sign here (P-256 or RSA)`);
}

/** CN=<commonName>, O=strongroom. */
function distinguishedName(commonName: string): forge.asn1.Asn1 {
  const attribute = (type: string, value: string) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, [
      sequence([
        oid(type),
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, forge.util.encodeUtf8(value)),
      ]),
    ]);
  return sequence([attribute(oids.commonName, commonName), attribute(oids.organizationName, "strongroom")]);
}

/**
 * The subject name of the CA's certificate, copied as it is into what the CA issues (the issuer
 * must match it byte for byte). Its TBSCertificate's fifth field, sixth when it has a version
 * ([0]: every v3 certificate, as this module makes; a v1 CA has none).
 */
function subjectOf(certificatePem: string): forge.asn1.Asn1 {
  const [block] = forge.pem.decode(certificatePem);
  if (block === undefined) throw new Error("the CA certificate is not PEM");
  const tbs = (fromDer(block.body).value as forge.asn1.Asn1[])[0];
  const fields = Array.isArray(tbs?.value) ? tbs.value : [];
  const versioned = fields[0]?.tagClass === asn1.Class.CONTEXT_SPECIFIC;
  const subject = fields[versioned ? 5 : 4];
  if (subject === undefined || subject.type !== asn1.Type.SEQUENCE)
    throw new Error("the CA certificate has no subject name where X.509 puts it");
  return subject;
}

/** The SHA-1 of the key's subjectPublicKey bits (RFC 5280, 4.2.1.2, method 1). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = fromDer(publicKey.export({ type: "spki", format: "der" }));
  const bits = (spki.value as forge.asn1.Asn1[])[1]?.value;
  if (typeof bits !== "string") throw new Error("a public key without its bits");
  // The BIT STRING's first byte counts its unused bits (0): not part of the key.
  return createHash("sha1")
    .update(Buffer.from(bits.slice(1), "binary"))
    .digest();
}

function subjectKeyIdentifier(publicKey: KeyObject): object {
  return {
    name: "subjectKeyIdentifier",
    value: asn1.create(
      asn1.Class.UNIVERSAL,
      asn1.Type.OCTETSTRING,
      false,
      keyIdentifier(publicKey).toString("binary"),
    ),
  };
}

/** node-forge fills in each extension's encoding (setExtensions) and wraps them ([3] EXPLICIT). */
function extensionsAsn1(extensions: readonly object[]): forge.asn1.Asn1 {
  const holder = forge.pki.createCertificate();
  holder.setExtensions([...extensions]);
  return (
    forge.pki as unknown as { certificateExtensionsToAsn1(extensions: unknown[]): forge.asn1.Asn1 }
  ).certificateExtensionsToAsn1(holder.extensions);
}

/**
 * A positive 16-byte serial whose first byte is never 0: the high bit cleared so DER does not
 * read it as negative, a low bit set so it is never a leading zero (OpenSSL refuses such padding).
 */
function serialNumber(): string {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x10;
  return serial.toString("binary");
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280, 4.1.2.5). */
function time(date: Date): forge.asn1.Asn1 {
  return date.getUTCFullYear() < 2050
    ? asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

function sequence(items: forge.asn1.Asn1[]): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
}

function oid(dotted: string): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(dotted).getBytes());
}

function integer(bytes: string): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, bytes);
}

/**
 * Parses DER, leaving BIT STRINGs as bytes: node-forge otherwise tries each as nested ASN.1 (a
 * key's bits are not). Its types lack the options argument its fromDer takes.
 */
function fromDer(der: Buffer | string): forge.asn1.Asn1 {
  const parse = asn1.fromDer as unknown as (
    bytes: string,
    options: { readonly decodeBitStrings: boolean },
  ) => forge.asn1.Asn1;
  return parse(typeof der === "string" ? der : der.toString("binary"), { decodeBitStrings: false });
}

function toDer(value: forge.asn1.Asn1): Buffer {
  return Buffer.from(asn1.toDer(value).getBytes(), "binary");
}

function pemPair(certificateDer: Buffer, privateKey: KeyObject): PemPair {
  return {
    certificatePem: forge.pem.encode({ type: "CERTIFICATE", body: certificateDer.toString("binary") }),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
