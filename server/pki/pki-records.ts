// The PKI engine's replicated records, JSON inside barrier ciphertext (server/system-records.ts):
// in the "pki" area the CA ("ca": certificate and private key - the key never leaves the barrier
// but to sign) and the roles ("role/<name>"); in the "crl" area one record per revoked certificate
// that has not expired yet (by serial). And the rules of roles: which names a role allows.

import { isIP } from "node:net";
import { z } from "zod";
import { NodeError } from "../errors.js";
import { decodeJsonRecord } from "../system-records.js";

export const pkiAreas = { pki: "pki", crl: "crl" } as const;
export const caRecordName = "ca";
export const roleRecordName = (name: string) => `role/${name}`;
export const rolePrefix = "role/";

const caSchema = z.strictObject({
  certificatePem: z.string().min(1),
  privateKeyPem: z.string().min(1),
  serial: z.string().regex(/^[0-9a-f]+$/),
  notAfter: z.number().int().positive(),
  createdAt: z.number().int().positive(),
  createdBy: z.string(),
});
export type CaRecord = z.infer<typeof caSchema>;

const roleSchema = z.strictObject({
  name: z.string(),
  allowedNames: z.array(z.string()).min(1),
  ttlMs: z.number().int().positive(),
  maxTtlMs: z.number().int().positive(),
  serverAuth: z.boolean(),
});
export type RoleRecord = z.infer<typeof roleSchema>;

const revokedSchema = z.strictObject({
  serial: z.string().regex(/^[0-9a-f]+$/),
  revokedAt: z.number().int().positive(),
  /** The certificate's own expiry: after it the entry leaves the list (the certificate is dead anyway). */
  notAfter: z.number().int().positive(),
});
export type RevokedRecord = z.infer<typeof revokedSchema>;

const encoder = new TextEncoder();

export function encodePkiRecord(record: CaRecord | RoleRecord | RevokedRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

export const decodeCaRecord = (bytes: Uint8Array) => decodeJsonRecord(caSchema, "PKI CA", bytes);
export const decodeRoleRecord = (bytes: Uint8Array) => decodeJsonRecord(roleSchema, "PKI role", bytes);
export const decodeRevokedRecord = (bytes: Uint8Array) =>
  decodeJsonRecord(revokedSchema, "PKI revocation", bytes);

/** Limits of a role: how many patterns, and the defaults of its lifetimes. */
export const roleLimits = {
  allowedNamesMax: 100,
  defaultTtlMs: 3_600_000,
  defaultMaxTtlMs: 24 * 3_600_000,
  dnsNamesMax: 20,
} as const;

const labelPattern = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Checks a name a certificate is to carry: an IP address (carried as an IP address, which is what
 * TLS clients check a host given by address against), or a DNS name.
 */
export function checkCertificateName(name: string): string {
  return isIP(name) === 0 ? checkDnsName(name) : canonicalIp(name);
}

/**
 * Checks a DNS name: dot-separated labels, at most 253 characters, the last one not all digits (a
 * top-level domain never is: "10.0.0.256" is a mistyped address, not a name).
 */
function checkDnsName(name: string): string {
  const labels = name.split(".");
  if (name.length === 0 || name.length > 253 || !labels.every((label) => labelPattern.test(label)))
    throw new NodeError(
      "INVALID_ARGUMENT",
      `${JSON.stringify(name)} is not a DNS name (labels of letters, digits and inner hyphens, separated by dots)`,
    );
  if (/^\d+$/.test(labels.at(-1) ?? ""))
    throw new NodeError(
      "INVALID_ARGUMENT",
      `${JSON.stringify(name)} is neither an IP address nor a DNS name (whose last label is never all digits)`,
    );
  return name.toLowerCase();
}

/** An IP address as a certificate carries it and patterns name it: IPv6 compressed, lower case. */
function canonicalIp(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

/**
 * Checks a role's name pattern: an IP address (allowing exactly that address), or a DNS name
 * where at most one '*' may stand in a label.
 */
export function checkNamePattern(pattern: string): string {
  if (isIP(pattern) !== 0) return canonicalIp(pattern);
  const stars = pattern.split("*").length - 1;
  if (stars > 1)
    throw new NodeError(
      "INVALID_ARGUMENT",
      `the name pattern ${JSON.stringify(pattern)} has more than one '*'`,
    );
  // With the star as a letter, the pattern must be a DNS name.
  checkDnsName(pattern.replace("*", "x"));
  return pattern.toLowerCase();
}

/** Whether `name` (checked already) is allowed by one of `patterns`. */
export function nameAllowed(patterns: readonly string[], name: string): boolean {
  // An address is allowed by itself only: a '*' stands for a DNS label, never for part of one.
  if (isIP(name) !== 0) return patterns.includes(name);
  return patterns.some((pattern) => {
    const star = pattern.indexOf("*");
    if (star === -1) return pattern === name;
    const head = pattern.slice(0, star);
    const tail = pattern.slice(star + 1);
    if (name.length <= head.length + tail.length || !name.startsWith(head) || !name.endsWith(tail))
      return false;
    // The star stands for one or more letters, digits or hyphens: never a dot.
    return /^[a-z0-9-]+$/.test(name.slice(head.length, name.length - tail.length));
  });
}
