// The seal record: what the replicated state keeps about how the root key is protected, so every
// node (and every restart) finds the same answer. It holds no secret in the clear - only the root
// key wrapped by each protector, share digests and check values - and is JSON, so an operator can
// read which seals protect the cluster.
//
// A record has one or two protectors (at most one of each type); either one alone gives the root
// key ("seal HA"). It always has exactly one authorizing share set, whose threshold authorizes
// rekeying, seal migration and root-token generation: the Shamir protector's unseal shares when
// there is one, otherwise the recovery shares (which protect nothing; they only prove a quorum).

import { createHmac, timingSafeEqual } from "node:crypto";
import { keyBytes, openBytes, sealBytes } from "../storage/barrier/aead.js";
import { SealError } from "./errors.js";
import { type Pkcs11Mechanism, pkcs11Mechanisms } from "./pkcs11/pkcs11-config.js";
import { type ShareSetDescriptor, validateShareSetDescriptor } from "./shares/share-set.js";

export const sealRecordVersion = 1;
export const rootKeyBytes = keyBytes;

export interface ShamirProtector {
  readonly type: "shamir";
  readonly shares: ShareSetDescriptor;
  /** Base64: the root key sealed (AES-256-GCM) by the secret the shares rebuild. */
  readonly wrappedRootKey: string;
}

export interface Pkcs11Protector {
  readonly type: "pkcs11";
  readonly keyLabel: string;
  readonly mechanism: Pkcs11Mechanism;
  /** Base64: the root key encrypted by the HSM key (GCM: IV | ciphertext | tag; key wrap: as wrapped). */
  readonly wrappedRootKey: string;
}

export type Protector = ShamirProtector | Pkcs11Protector;
export type SealType = Protector["type"];

export interface SealRecord {
  readonly version: typeof sealRecordVersion;
  /** Base64 HMAC of the root key: whatever a seal unwraps must match it. */
  readonly rootKeyCheck: string;
  readonly protectors: readonly Protector[];
  /** Recovery shares: present exactly when there is no Shamir protector. */
  readonly recovery: ShareSetDescriptor | null;
}

export function rootKeyCheckOf(rootKey: Uint8Array): string {
  return createHmac("sha256", rootKey).update("strongroom root key check v1").digest("base64");
}

/** Throws ROOT_KEY_MISMATCH unless `rootKey` is the key the record protects. */
export function verifyRootKey(record: SealRecord, rootKey: Uint8Array, source: string): void {
  const expected = Buffer.from(record.rootKeyCheck, "base64");
  const actual = Buffer.from(rootKeyCheckOf(rootKey), "base64");
  if (
    rootKey.length !== rootKeyBytes ||
    expected.length !== actual.length ||
    !timingSafeEqual(expected, actual)
  ) {
    throw new SealError("ROOT_KEY_MISMATCH", `${source} gave a key that is not this cluster's root key`);
  }
}

/** The share set whose threshold authorizes rekey, migration and root-token generation. */
export function authorizingShareSet(record: SealRecord): ShareSetDescriptor {
  const shamir = shamirProtectorOf(record);
  const set = shamir?.shares ?? record.recovery;
  if (set === null || set === undefined)
    throw new SealError("SEAL_RECORD_INVALID", "the seal record has no share set");
  return set;
}

export function shamirProtectorOf(record: SealRecord): ShamirProtector | undefined {
  return record.protectors.find((protector): protector is ShamirProtector => protector.type === "shamir");
}

export function pkcs11ProtectorOf(record: SealRecord): Pkcs11Protector | undefined {
  return record.protectors.find((protector): protector is Pkcs11Protector => protector.type === "pkcs11");
}

/** Seals the root key under a share set's secret, bound to that set (its id is in the AAD). */
export function wrapRootKeyWithShares(
  rootKey: Uint8Array,
  shares: ShareSetDescriptor,
  secret: Uint8Array,
): string {
  return Buffer.from(sealBytes(secret, shamirAssociatedData(shares), rootKey)).toString("base64");
}

export function unwrapRootKeyWithShares(protector: ShamirProtector, secret: Uint8Array): Uint8Array {
  const rootKey = openBytes(
    secret,
    shamirAssociatedData(protector.shares),
    Buffer.from(protector.wrappedRootKey, "base64"),
  );
  if (rootKey === null) {
    throw new SealError(
      "SEAL_RECORD_INVALID",
      `the shares of set ${protector.shares.id} do not open the stored root key (the seal record was altered)`,
    );
  }
  return rootKey;
}

export function encodeSealRecord(record: SealRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(validateSealRecord(record)));
}

export function decodeSealRecord(bytes: Uint8Array): SealRecord {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    throw new SealError("SEAL_RECORD_INVALID", "the seal record is not JSON", { cause: error });
  }
  return validateSealRecord(value);
}

/** Checks every field and the record's invariants; a record that fails is never used. */
export function validateSealRecord(value: unknown): SealRecord {
  const fail = (why: string): never => {
    throw new SealError("SEAL_RECORD_INVALID", `the seal record is invalid: ${why}`);
  };
  if (typeof value !== "object" || value === null) return fail("not an object");
  const { version, rootKeyCheck, protectors, recovery } = value as Record<string, unknown>;
  if (version !== sealRecordVersion) fail(`unknown version ${JSON.stringify(version)}`);
  if (!isBase64Bytes(rootKeyCheck, 32)) fail("rootKeyCheck is not 32 bytes of base64");
  if (!Array.isArray(protectors) || protectors.length < 1 || protectors.length > 2)
    fail("it needs one or two protectors");
  const checked = (protectors as unknown[]).map((protector, position) =>
    validateProtector(protector, position, fail),
  );
  if (new Set(checked.map((protector) => protector.type)).size !== checked.length)
    fail("two protectors of one type");
  const hasShamir = checked.some((protector) => protector.type === "shamir");
  const recoverySet =
    recovery === null || recovery === undefined
      ? null
      : validateShareSetDescriptor(recovery, "recovery shares");
  if (hasShamir === (recoverySet !== null)) {
    fail(hasShamir ? "recovery shares exist beside unseal shares" : "an HSM-only seal needs recovery shares");
  }
  return {
    version: sealRecordVersion,
    rootKeyCheck: rootKeyCheck as string,
    protectors: checked,
    recovery: recoverySet,
  };
}

function validateProtector(value: unknown, position: number, fail: (why: string) => never): Protector {
  if (typeof value !== "object" || value === null) return fail(`protector ${position} is not an object`);
  const protector = value as Record<string, unknown>;
  if (protector.type === "shamir") {
    if (!isBase64Bytes(protector.wrappedRootKey, 12 + rootKeyBytes + 16))
      fail("the Shamir protector's wrappedRootKey is malformed");
    return {
      type: "shamir",
      shares: validateShareSetDescriptor(protector.shares, "unseal shares"),
      wrappedRootKey: protector.wrappedRootKey as string,
    };
  }
  if (protector.type === "pkcs11") {
    const { keyLabel, mechanism, wrappedRootKey } = protector;
    if (typeof keyLabel !== "string" || keyLabel === "") fail("the PKCS#11 protector has no keyLabel");
    if (!pkcs11Mechanisms.includes(mechanism as Pkcs11Mechanism))
      fail(`unknown PKCS#11 mechanism ${JSON.stringify(mechanism)}`);
    if (!isBase64(wrappedRootKey) || Buffer.from(wrappedRootKey as string, "base64").length < rootKeyBytes) {
      fail("the PKCS#11 protector's wrappedRootKey is malformed");
    }
    return {
      type: "pkcs11",
      keyLabel: keyLabel as string,
      mechanism: mechanism as Pkcs11Mechanism,
      wrappedRootKey: wrappedRootKey as string,
    };
  }
  return fail(`protector ${position} has unknown type ${JSON.stringify(protector.type)}`);
}

function shamirAssociatedData(shares: ShareSetDescriptor): Uint8Array {
  return new TextEncoder().encode(`strongroom root key v1 shamir ${shares.id}`);
}

function isBase64(value: unknown): boolean {
  return typeof value === "string" && /^[A-Za-z0-9+/]*={0,2}$/.test(value);
}

function isBase64Bytes(value: unknown, length: number): boolean {
  return isBase64(value) && Buffer.from(value as string, "base64").length === length;
}
