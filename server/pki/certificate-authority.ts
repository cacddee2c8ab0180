// The X.509 work of the PKI engine: the internal CA's self-signed certificate, leaf certificates
// signed by it, and the signed revocation list (an X.509 v2 CRL, RFC 5280 §5). node-forge builds and
// signs the structures (it has no CRL support, so the CRL is assembled from its ASN.1 helpers);
// keys come from Node's crypto, off the event loop. Nothing here parses input from outside: the CA
// is what this module made and the engine stored through the barrier.

import { generateKeyPair, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { isIP } from "node:net";
import { promisify } from "node:util";
import type Forge from "node-forge";

/**
 * node-forge, loaded on first use rather than at a node's start, which it cost about 30 ms: a
 * node makes certificates only when asked (docs/performance.md, fifty-second session). It is
 * CommonJS, so a synchronous require serves the synchronous functions below.
 */
let forgeModule: typeof Forge | null = null;
const forge = {
  get asn1(): typeof Forge.asn1 {
    return loadForge().asn1;
  },
  get md(): typeof Forge.md {
    return loadForge().md;
  },
  get pem(): typeof Forge.pem {
    return loadForge().pem;
  },
  get pki(): typeof Forge.pki {
    return loadForge().pki;
  },
  get util(): typeof Forge.util {
    return loadForge().util;
  },
};

function loadForge(): typeof Forge {
  forgeModule ??= createRequire(import.meta.url)("node-forge") as typeof Forge;
  return forgeModule;
}

const generateKeyPairAsync = promisify(generateKeyPair);

export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  /** Hexadecimal, lower case. */
  readonly serial: string;
  readonly notAfter: number;
}

export interface CaMaterial {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export interface LeafRequest {
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly notAfter: number;
  readonly serverAuth: boolean;
}

export interface RevokedEntry {
  readonly serial: string;
  readonly revokedAt: number;
}

const caModulusBits = 3072;
const leafModulusBits = 2048;
/** Issued certificates are valid from a little before now: clocks of consumers may lag. */
const backdateMs = 60_000;

/** A self-signed CA certificate and its key, valid until `notAfter`. */
export async function createCa(commonName: string, notAfter: number): Promise<IssuedCertificate> {
  const keys = await newKeyPair(caModulusBits);
  const certificate = newCertificate(keys.publicKey, notAfter);
  makeSelfSignedCa(certificate, commonName, keys.privateKey);
  return issued(certificate, keys.privateKeyPem);
}

/**
 * Makes `certificate` a CA of `commonName` (organization strongroom) that signs leaves only, and
 * signs it with its own key.
 */
function makeSelfSignedCa(
  certificate: Forge.pki.Certificate,
  commonName: string,
  privateKey: Forge.pki.rsa.PrivateKey,
): void {
  const subject = [
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "strongroom" },
  ];
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    // No intermediate below it: it signs leaves only.
    { name: "basicConstraints", cA: true, critical: true, pathLenConstraint: 0 },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  certificate.sign(privateKey, forge.md.sha256.create());
}

/** A new key pair and a certificate for it, signed by the CA. */
export async function issueLeaf(ca: CaMaterial, request: LeafRequest): Promise<IssuedCertificate> {
  const caCertificate = forge.pki.certificateFromPem(ca.certificatePem);
  const caKey = forge.pki.privateKeyFromPem(ca.privateKeyPem);
  const keys = await newKeyPair(leafModulusBits);
  const certificate = newCertificate(keys.publicKey, request.notAfter);
  certificate.setSubject([{ name: "commonName", value: request.commonName }]);
  certificate.setIssuer(caCertificate.subject.attributes);
  const names = [...new Set([request.commonName, ...request.dnsNames])];
  certificate.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", clientAuth: true, ...(request.serverAuth ? { serverAuth: true } : {}) },
    // An address as an IP address (type 7), a name as a DNS name (type 2).
    {
      name: "subjectAltName",
      altNames: names.map((value) => (isIP(value) === 0 ? { type: 2, value } : { type: 7, ip: value })),
    },
    { name: "subjectKeyIdentifier" },
    {
      name: "authorityKeyIdentifier",
      keyIdentifier: caCertificate.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  certificate.sign(caKey, forge.md.sha256.create());
  return issued(certificate, keys.privateKeyPem);
}

/**
 * The CA's revocation list of `revoked`, valid from `thisUpdate` to `nextUpdate`, numbered
 * `number` (the CRL number extension, which consumers use to tell a newer list from an older one).
 */
export function signCrl(
  ca: CaMaterial,
  revoked: readonly RevokedEntry[],
  thisUpdate: number,
  nextUpdate: number,
  number: number,
): string {
  const { asn1 } = forge;
  const caCertificate = forge.pki.certificateFromPem(ca.certificatePem);
  const caKey = forge.pki.privateKeyFromPem(ca.privateKeyPem) as Forge.pki.rsa.PrivateKey;
  const sha256WithRsa = () =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(
        asn1.Class.UNIVERSAL,
        asn1.Type.OID,
        false,
        asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption as string).getBytes(),
      ),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ""),
    ]);
  const entries = revoked.map((entry) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, forge.util.hexToBytes(entry.serial)),
      time(entry.revokedAt),
    ]),
  );
  const extensions = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      extension(
        "2.5.29.35",
        // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
          asn1.create(
            asn1.Class.CONTEXT_SPECIFIC,
            0,
            false,
            caCertificate.generateSubjectKeyIdentifier().getBytes(),
          ),
        ]),
      ),
      extension(
        "2.5.29.20",
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, integerBytes(number)),
      ),
    ]),
  ]);
  const tbs = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    // v2
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, String.fromCharCode(1)),
    sha256WithRsa(),
    forge.pki.distinguishedNameToAsn1(caCertificate.subject),
    time(thisUpdate),
    time(nextUpdate),
    ...(entries.length === 0 ? [] : [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, entries)]),
    extensions,
  ]);
  const digest = forge.md.sha256.create();
  digest.update(asn1.toDer(tbs).getBytes());
  const signature = caKey.sign(digest);
  const crl = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    sha256WithRsa(),
    // A BIT STRING's first byte is the count of unused bits.
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, String.fromCharCode(0) + signature),
  ]);
  return unixLines(forge.pem.encode({ type: "X509 CRL", body: asn1.toDer(crl).getBytes() }, { maxline: 64 }));
}

/** The serial of a PEM certificate this module issued, as `issued` names it. */
export function serialOf(certificatePem: string): string {
  return forge.pki.certificateFromPem(certificatePem).serialNumber.toLowerCase();
}

function extension(oid: string, value: Forge.asn1.Asn1): Forge.asn1.Asn1 {
  const { asn1 } = forge;
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, asn1.toDer(value).getBytes()),
  ]);
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050. */
function time(at: number): Forge.asn1.Asn1 {
  const { asn1 } = forge;
  const date = new Date(Math.floor(at / 1000) * 1000);
  return date.getUTCFullYear() < 2050
    ? asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

/** A non-negative integer as minimal DER content bytes. */
function integerBytes(value: number): string {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return forge.util.hexToBytes(hex);
}

async function newKeyPair(bits: number): Promise<{
  publicKey: Forge.pki.rsa.PublicKey;
  privateKey: Forge.pki.rsa.PrivateKey;
  privateKeyPem: string;
}> {
  const pair = await generateKeyPairAsync("rsa", {
    modulusLength: bits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey),
    privateKey: forge.pki.privateKeyFromPem(pair.privateKey) as Forge.pki.rsa.PrivateKey,
    privateKeyPem: pair.privateKey,
  };
}

function newCertificate(publicKey: Forge.pki.rsa.PublicKey, notAfter: number): Forge.pki.Certificate {
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  // A 127-bit positive serial whose first byte is never 0 (minimal DER, never read as negative).
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x10;
  certificate.serialNumber = serial.toString("hex");
  certificate.validity.notBefore = new Date(Date.now() - backdateMs);
  certificate.validity.notAfter = new Date(notAfter);
  return certificate;
}

/** node-forge ends PEM lines with CRLF; Node's crypto, OpenSSL's tools and bundles use LF. */
function unixLines(pem: string): string {
  return pem.replaceAll("\r\n", "\n");
}

function issued(certificate: Forge.pki.Certificate, privateKeyPem: string): IssuedCertificate {
  return {
    certificatePem: unixLines(forge.pki.certificateToPem(certificate)),
    privateKeyPem,
    serial: certificate.serialNumber.toLowerCase(),
    notAfter: certificate.validity.notAfter.getTime(),
  };
}
