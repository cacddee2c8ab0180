// Leases: every dynamic credential the cluster hands out, with its lifetime. A certificate from
// the PKI engine has a lease record of its own in the "lease" area (by lease id
// "pki/issue/<role>/<serial>"); a token is its own lease ("auth/token/<accessor>"), seen through its
// token record. And the records of identities disabled by an emergency revocation, in the
// "disabled-identity" area (by identity).

import { z } from "zod";
import type { TokenRecord } from "../access/access-records.js";
import { decodeJsonRecord } from "../system-records.js";

export const leaseAreas = { lease: "lease", disabled: "disabled-identity" } as const;

export const tokenLeasePrefix = "auth/token/";
export const certificateLeasePrefix = "pki/issue/";

export const tokenLeaseId = (accessor: string) => `${tokenLeasePrefix}${accessor}`;
export const certificateLeaseId = (role: string, serial: string) =>
  `${certificateLeasePrefix}${role}/${serial}`;

const certificateLeaseSchema = z.strictObject({
  id: z.string(),
  kind: z.literal("certificate"),
  /** The client identity it was issued to. */
  identity: z.string(),
  issuedAt: z.number().int().positive(),
  expiresAt: z.number().int().positive(),
  role: z.string(),
  serial: z.string().regex(/^[0-9a-f]+$/),
});
export type CertificateLease = z.infer<typeof certificateLeaseSchema>;

const disabledSchema = z.strictObject({
  identity: z.string(),
  disabledAt: z.number().int().positive(),
  disabledBy: z.string(),
  reason: z.string(),
});
export type DisabledIdentityRecord = z.infer<typeof disabledSchema>;

/** A lease of either kind, as the Leases API shows it. */
export interface LeaseView {
  readonly id: string;
  readonly kind: "token" | "certificate";
  readonly identity: string;
  readonly issuedAt: number;
  /** 0: never (the root token). */
  readonly expiresAt: number;
  readonly maxExpiresAt: number;
  readonly renewable: boolean;
}

const encoder = new TextEncoder();

export function encodeLeaseRecord(record: CertificateLease | DisabledIdentityRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

export const decodeCertificateLease = (bytes: Uint8Array) =>
  decodeJsonRecord(certificateLeaseSchema, "lease", bytes);
export const decodeDisabledIdentity = (bytes: Uint8Array) =>
  decodeJsonRecord(disabledSchema, "disabled identity", bytes);

export function certificateLeaseView(lease: CertificateLease): LeaseView {
  return {
    id: lease.id,
    kind: "certificate",
    identity: lease.identity,
    issuedAt: lease.issuedAt,
    expiresAt: lease.expiresAt,
    maxExpiresAt: lease.expiresAt,
    renewable: false,
  };
}

export function tokenLeaseView(token: TokenRecord): LeaseView {
  return {
    id: tokenLeaseId(token.accessor),
    kind: "token",
    identity: token.createdBy,
    issuedAt: token.createdAt,
    expiresAt: token.expiresAt,
    maxExpiresAt: token.maxExpiresAt,
    renewable: token.renewable,
  };
}
