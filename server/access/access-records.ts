// The replicated records of access control, as JSON inside barrier ciphertext in their system
// areas (server/system-records.ts): a policy (its document as written, by name), an identity
// binding (by the identity or prefix it binds), a token (by the keyed hash of the token), a token
// role (by its name).

import { z } from "zod";
import type { SystemArea } from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { decodeJsonRecord } from "../system-records.js";

export const accessAreas = {
  policy: "policy",
  binding: "identity",
  token: "token",
  tokenRole: "token-role",
} as const satisfies Record<string, SystemArea>;

export interface PolicyRecord {
  /** The document as the operator wrote it (YAML or JSON); parsed again when loaded. */
  readonly document: string;
}

export interface BindingRecord {
  /** An identity ("alice") or a prefix of identities ("ci-*"; "*" is every client). */
  readonly identity: string;
  readonly policies: readonly string[];
}

export interface TokenRecord {
  readonly accessor: string;
  readonly policies: readonly string[];
  readonly displayName: string;
  readonly createdBy: string;
  readonly createdAt: number;
  /** 0: never expires. */
  readonly expiresAt: number;
  /** 0: no hard limit. */
  readonly maxExpiresAt: number;
  readonly ttlMs: number;
  readonly renewable: boolean;
  /** The keyed hash of the parent token, or null for an orphan (the root token, or one made from a certificate identity). */
  readonly parent: string | null;
  /** Calls it may still make, or null for no limit (the record goes with the last one). */
  readonly usesLeft: number | null;
  /** The token role it was created against (absent: none; records before roles have none). */
  readonly role?: string;
  /** The client identities (or prefixes, "ci-*") that may present it (absent: any). */
  readonly boundIdentities?: readonly string[];
}

const tokenRoleSchema = z.strictObject({
  name: z.string(),
  allowedPolicies: z.array(z.string()).min(1),
  /** 0: the cluster's default TTL, within maxTtlMs. */
  ttlMs: z.number().int().nonnegative(),
  /** 0: the cluster's maximum (auth.tokenMaxTtlMs) at the time a token is created. */
  maxTtlMs: z.number().int().nonnegative(),
  renewable: z.boolean(),
  orphan: z.boolean(),
  /** 0: no limit. */
  numUses: z.number().int().nonnegative(),
  /** Identities (or prefixes) its tokens are bound to; empty: none. */
  boundIdentities: z.array(z.string()).default([]),
});
/** What tokens created against a role may be: the role, not the creator's policies, bounds them. */
export type TokenRoleRecord = z.infer<typeof tokenRoleSchema>;

export const decodeTokenRoleRecord = (bytes: Uint8Array) =>
  decodeJsonRecord(tokenRoleSchema, "token role", bytes);

const identityPattern = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,62}|[A-Za-z0-9._-]{0,62}\*)$/;

/** Checks an identity or identity prefix of a binding ("alice", "ci-*", "*"). */
export function checkIdentityPattern(identity: string): string {
  if (!identityPattern.test(identity)) {
    throw new NodeError(
      "INVALID_ARGUMENT",
      `an identity binding names a client identity (letters, digits, '.', '_', '-') or a prefix of them ending in '*': got ${JSON.stringify(identity)}`,
    );
  }
  return identity;
}

/** Whether a binding's identity (or prefix) covers `identity`. */
export function bindingCovers(pattern: string, identity: string): boolean {
  return pattern.endsWith("*") ? identity.startsWith(pattern.slice(0, -1)) : pattern === identity;
}

/** A binding's record name: "exact.<identity>" or "prefix.<prefix>" (record names have no '*'). */
export function bindingRecordName(identity: string): string {
  return identity.endsWith("*") ? `prefix.${identity.slice(0, -1)}` : `exact.${identity}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeRecord(
  record: PolicyRecord | BindingRecord | TokenRecord | TokenRoleRecord,
): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

export function decodePolicyRecord(bytes: Uint8Array): PolicyRecord {
  const record = parse(bytes) as Partial<PolicyRecord>;
  if (typeof record.document !== "string") throw corrupt("policy");
  return { document: record.document };
}

export function decodeBindingRecord(bytes: Uint8Array): BindingRecord {
  const record = parse(bytes) as Partial<BindingRecord>;
  if (typeof record.identity !== "string" || !isStringList(record.policies)) throw corrupt("binding");
  return { identity: record.identity, policies: record.policies };
}

export function decodeTokenRecord(bytes: Uint8Array): TokenRecord {
  const record = parse(bytes) as Partial<TokenRecord>;
  const numbers = [record.createdAt, record.expiresAt, record.maxExpiresAt, record.ttlMs];
  if (
    typeof record.accessor !== "string" ||
    !isStringList(record.policies) ||
    typeof record.displayName !== "string" ||
    typeof record.createdBy !== "string" ||
    !numbers.every((n) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0) ||
    typeof record.renewable !== "boolean" ||
    !(record.parent === null || typeof record.parent === "string") ||
    !(
      record.usesLeft === undefined ||
      record.usesLeft === null ||
      (Number.isSafeInteger(record.usesLeft) && record.usesLeft > 0)
    ) ||
    !(record.role === undefined || typeof record.role === "string") ||
    !(record.boundIdentities === undefined || isStringList(record.boundIdentities))
  ) {
    throw corrupt("token");
  }
  return { ...(record as TokenRecord), usesLeft: record.usesLeft ?? null };
}

function parse(bytes: Uint8Array): unknown {
  try {
    const value: unknown = JSON.parse(decoder.decode(bytes));
    if (typeof value !== "object" || value === null) throw new Error("not an object");
    return value;
  } catch {
    throw new NodeError("INTERNAL", "an access record does not decode");
  }
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((entry) => typeof entry === "string");
}

function corrupt(kind: string): NodeError {
  return new NodeError("INTERNAL", `a ${kind} record does not have the expected fields`);
}

/**
 * The root token's record, made at init while the new keyring and root key are at hand (the
 * leader is not unsealed yet): every policy, no expiry, no parent.
 */
export function rootTokenRecord(createdBy: string, accessor: string, now: number): TokenRecord {
  return {
    accessor,
    policies: ["root"],
    displayName: "root",
    createdBy,
    createdAt: now,
    expiresAt: 0,
    maxExpiresAt: 0,
    ttlMs: 0,
    renewable: false,
    parent: null,
    usesLeft: null,
  };
}
