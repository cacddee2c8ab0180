// What operators do to a seal, as functions from one seal record to the next: init, rekey, seal
// migration and HSM key rotation. None of them rewrites a secret or the keyring: they only change
// how the root key is protected. Each checks its authorization (the secret rebuilt from a
// threshold of the authorizing shares) and the root key before it builds anything, and returns a
// new record for the caller to replicate; shares to hand out are returned once and never stored.

import { randomBytes } from "node:crypto";
import { SealError } from "./errors.js";
import type { Pkcs11Client } from "./pkcs11/pkcs11-client.js";
import {
  authorizingShareSet,
  type Pkcs11Protector,
  type Protector,
  pkcs11ProtectorOf,
  rootKeyBytes,
  rootKeyCheckOf,
  type SealRecord,
  type ShamirProtector,
  sealRecordVersion,
  shamirProtectorOf,
  unwrapRootKeyWithShares,
  validateSealRecord,
  verifyRootKey,
  wrapRootKeyWithShares,
} from "./seal-record.js";
import { encryptShare, parsePublicKey } from "./shares/share-encryption.js";
import {
  newShareSet,
  type ShareSetDescriptor,
  secretMatches,
  validateShareCounts,
} from "./shares/share-set.js";

export interface ShareOptions {
  readonly count: number;
  readonly threshold: number;
  /** One PEM public key per share (RSA or X25519): share i is handed out encrypted to key i. */
  readonly operatorKeys?: readonly string[];
}

export interface Pkcs11Options {
  /** The client for the token; its config names the key label and mechanism. */
  readonly client: Pkcs11Client;
  /** Generate the key in the token (refused if the label exists) instead of using an existing one. */
  readonly generateKey?: boolean;
}

export interface SealInitOptions {
  /** Unseal shares. With pkcs11 as well, the cluster has both seals (seal HA). */
  readonly shamir?: ShareOptions;
  readonly pkcs11?: Pkcs11Options;
  /** Recovery shares for an HSM-only seal (default 5 shares, threshold 3). */
  readonly recovery?: ShareOptions;
}

export interface HandedOutShares {
  readonly threshold: number;
  readonly shares: readonly string[];
  /** True when each share is encrypted to its operator's key. */
  readonly encrypted: boolean;
}

export interface SealInitResult {
  readonly record: SealRecord;
  /** The root key, for the caller to wrap the keyring with, then zero. */
  readonly rootKey: Uint8Array;
  readonly unsealShares: HandedOutShares | null;
  readonly recoveryShares: HandedOutShares | null;
}

const defaultRecovery: ShareOptions = { count: 5, threshold: 3 };

/** Makes a new root key and protects it as asked. */
export async function initializeSeal(options: SealInitOptions): Promise<SealInitResult> {
  if (options.shamir === undefined && options.pkcs11 === undefined) {
    throw new SealError("INVALID_ARGUMENT", "init needs a seal: Shamir shares, a PKCS#11 HSM, or both");
  }
  if (options.shamir !== undefined && options.recovery !== undefined) {
    throw new SealError(
      "INVALID_ARGUMENT",
      "with unseal shares there are no separate recovery shares: the unseal shares authorize recovery operations",
    );
  }
  // Operator keys are checked before anything is made, so a bad key wastes nothing.
  checkOperatorKeys(options.shamir);
  checkOperatorKeys(options.recovery);
  const rootKey = new Uint8Array(randomBytes(rootKeyBytes));
  try {
    const protectors: Protector[] = [];
    let unsealShares: HandedOutShares | null = null;
    let recoveryShares: HandedOutShares | null = null;
    let recovery: ShareSetDescriptor | null = null;
    if (options.pkcs11 !== undefined) protectors.push(await protectWithPkcs11(rootKey, options.pkcs11));
    if (options.shamir !== undefined) {
      const made = await protectWithShares(rootKey, options.shamir);
      protectors.push(made.protector);
      unsealShares = made.handedOut;
    } else {
      const made = await newShareSet(
        options.recovery?.count ?? defaultRecovery.count,
        options.recovery?.threshold ?? defaultRecovery.threshold,
      );
      made.secret.fill(0);
      recovery = made.descriptor;
      recoveryShares = handOut(made.shares, made.descriptor.threshold, options.recovery);
    }
    const record = validateSealRecord({
      version: sealRecordVersion,
      rootKeyCheck: rootKeyCheckOf(rootKey),
      protectors,
      recovery,
    });
    return { record, rootKey, unsealShares, recoveryShares };
  } catch (error) {
    rootKey.fill(0);
    throw error;
  }
}

/**
 * New shares for the authorizing share set (the unseal shares, or the recovery shares of an
 * HSM-only seal), authorized by the secret a threshold of the current ones rebuilt. The root key
 * stays the same; the old shares stop working.
 */
export async function rekeyShares(
  record: SealRecord,
  authorization: Uint8Array,
  options: ShareOptions,
): Promise<{ record: SealRecord; shares: HandedOutShares }> {
  checkAuthorization(record, authorization);
  checkOperatorKeys(options);
  const shamir = shamirProtectorOf(record);
  if (shamir === undefined) {
    const made = await newShareSet(options.count, options.threshold);
    made.secret.fill(0);
    return {
      record: validateSealRecord({ ...record, recovery: made.descriptor }),
      shares: handOut(made.shares, made.descriptor.threshold, options),
    };
  }
  const rootKey = unwrapRootKeyWithShares(shamir, authorization);
  try {
    verifyRootKey(record, rootKey, "the current unseal shares");
    const made = await protectWithShares(rootKey, options);
    const protectors = record.protectors.map((protector) =>
      protector.type === "shamir" ? made.protector : protector,
    );
    return { record: validateSealRecord({ ...record, protectors }), shares: made.handedOut };
  } finally {
    rootKey.fill(0);
  }
}

export interface MigrationTarget {
  /** Keep (or gain) unseal shares. */
  readonly shamir: boolean;
  /** Keep (or gain) the HSM, with this token and key; absent to drop it. */
  readonly pkcs11?: Pkcs11Options;
}

/**
 * Moves the root key's protection between Shamir, HSM and both, without new shares and without
 * rewriting any secret. Operators keep the shares they hold, in a new role: going to HSM-only,
 * the unseal shares become the recovery shares; leaving HSM-only, the recovery shares become the
 * unseal shares. Authorized by a threshold of the authorizing shares; needs the root key (an
 * unsealed node).
 */
export async function migrateSeal(
  record: SealRecord,
  rootKey: Uint8Array,
  authorization: Uint8Array,
  target: MigrationTarget,
): Promise<SealRecord> {
  checkAuthorization(record, authorization);
  verifyRootKey(record, rootKey, "the unsealed node");
  if (!target.shamir && target.pkcs11 === undefined) {
    throw new SealError("INVALID_ARGUMENT", "a seal needs at least one protector: Shamir shares or an HSM");
  }
  const authorizingSet = authorizingShareSet(record);
  const protectors: Protector[] = [];
  const currentHsm = pkcs11ProtectorOf(record);
  if (target.pkcs11 !== undefined) {
    // An HSM protector the cluster has is kept as it is, whatever key label the node's config
    // names: after an HSM key rotation the record names the key, and the config's may be gone.
    // Moving the root key to another HSM key is a rotation (rewrapWithHsmKey), not a migration.
    if (currentHsm !== undefined && target.pkcs11.generateKey === true) {
      throw new SealError(
        "INVALID_ARGUMENT",
        `the cluster's HSM protector (key "${currentHsm.keyLabel}") is kept by a migration, so no HSM key is generated: to wrap the root key under a new key, rotate the HSM key`,
      );
    }
    protectors.push(currentHsm ?? (await protectWithPkcs11(rootKey, target.pkcs11)));
  }
  if (target.shamir) {
    const shamir: ShamirProtector = shamirProtectorOf(record) ?? {
      type: "shamir",
      shares: authorizingSet,
      wrappedRootKey: wrapRootKeyWithShares(rootKey, authorizingSet, authorization),
    };
    protectors.push(shamir);
  }
  const next = validateSealRecord({
    ...record,
    protectors,
    recovery: target.shamir ? null : authorizingSet,
  });
  if (JSON.stringify(next) === JSON.stringify(record)) {
    throw new SealError("INVALID_ARGUMENT", "the seal is already configured that way: nothing to migrate");
  }
  return next;
}

/**
 * HSM key rotation: encrypts the root key under another key of the token (generated or existing)
 * and retires the old one from the record. The old key stays in the HSM, because snapshots taken
 * before the rotation still need it; delete it once they have expired.
 */
export async function rewrapWithHsmKey(
  record: SealRecord,
  rootKey: Uint8Array,
  options: Pkcs11Options,
): Promise<SealRecord> {
  verifyRootKey(record, rootKey, "the unsealed node");
  const current = pkcs11ProtectorOf(record);
  if (current === undefined) {
    throw new SealError("INVALID_ARGUMENT", "this cluster has no HSM seal to rotate: migrate to one instead");
  }
  if (current.keyLabel === options.client.config.keyLabel) {
    throw new SealError(
      "INVALID_ARGUMENT",
      `the root key is already wrapped by "${current.keyLabel}": rotation needs a new key label`,
    );
  }
  const next = await protectWithPkcs11(rootKey, options);
  const protectors = record.protectors.map((protector) => (protector.type === "pkcs11" ? next : protector));
  return validateSealRecord({ ...record, protectors });
}

/** Throws unless `authorization` is what a threshold of the record's authorizing shares rebuild. */
export function checkAuthorization(record: SealRecord, authorization: Uint8Array): void {
  const set = authorizingShareSet(record);
  if (!secretMatches(set, authorization)) {
    throw new SealError("SHARE_MISMATCH", `the authorization was not made from the shares of set ${set.id}`);
  }
}

async function protectWithPkcs11(rootKey: Uint8Array, options: Pkcs11Options): Promise<Pkcs11Protector> {
  const { client } = options;
  const { keyLabel, mechanism } = client.config;
  await client.ensureKey(keyLabel, { generate: options.generateKey === true });
  const wrapped = await client.wrapRootKey(rootKey, keyLabel, mechanism);
  // Unwrapped again at once: a key or mechanism that cannot give the root key back is found at
  // init, not at the first restart.
  const back = await client.unwrapRootKey(wrapped, keyLabel, mechanism);
  const same = back.length === rootKey.length && back.every((byte, i) => byte === rootKey[i]);
  back.fill(0);
  if (!same)
    throw new SealError("HSM_UNWRAP_FAILED", `the HSM key "${keyLabel}" does not give the root key back`);
  return { type: "pkcs11", keyLabel, mechanism, wrappedRootKey: Buffer.from(wrapped).toString("base64") };
}

async function protectWithShares(
  rootKey: Uint8Array,
  options: ShareOptions,
): Promise<{ protector: ShamirProtector; handedOut: HandedOutShares }> {
  const made = await newShareSet(options.count, options.threshold);
  try {
    const protector: ShamirProtector = {
      type: "shamir",
      shares: made.descriptor,
      wrappedRootKey: wrapRootKeyWithShares(rootKey, made.descriptor, made.secret),
    };
    return { protector, handedOut: handOut(made.shares, made.descriptor.threshold, options) };
  } finally {
    made.secret.fill(0);
  }
}

function handOut(
  shares: readonly string[],
  threshold: number,
  options: ShareOptions | undefined,
): HandedOutShares {
  const keys = options?.operatorKeys;
  if (keys === undefined) return { threshold, shares, encrypted: false };
  return { threshold, shares: shares.map((share, i) => encryptShare(share, keys[i] ?? "")), encrypted: true };
}

/**
 * Refuses share options that could not make shares: counts out of range, operator keys that are
 * not one valid key per share. A rekey checks them with its first share, before operators gather.
 */
export function checkShareOptions(options: ShareOptions): void {
  validateShareCounts(options.count, options.threshold);
  checkOperatorKeys(options);
}

function checkOperatorKeys(options: ShareOptions | undefined): void {
  const keys = options?.operatorKeys;
  if (options === undefined || keys === undefined) return;
  if (keys.length !== options.count) {
    throw new SealError(
      "INVALID_ARGUMENT",
      `${keys.length} operator keys given for ${options.count} shares: give one per share`,
    );
  }
  for (const key of keys) parsePublicKey(key);
}
