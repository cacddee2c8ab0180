// A secret's metadata record as stored in LevelDB (MessagePack) and as held in memory.
//
// In memory a secret's versions are a Map by version number, never a plain object: V8 keeps an
// object's integer-named properties in an array as long as the largest index, so `{ "900": … }`
// costs an 8 KiB backing store until a gap past about 1,000 turns it into a dictionary. A secret at
// version 900 with 10 versions kept took 12 KiB that way (decoded and cached) against 1.5 KiB as a
// Map, and as much again in every copy an apply made. The stored form is a MessagePack map either
// way: records written before this file have string keys ("900"), newer ones integer keys.

import { Packr } from "msgpackr";
import { packTransient } from "../msgpack-owned.js";
import type { SecretMetadata, VersionRecord } from "./secret-state.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/**
 * The record's bytes as a view of msgpackr's encoding buffer, which the next encoding anywhere in
 * the process reuses (msgpack-owned.ts): for a LevelDB write, which copies them at once.
 */
export function encodeMetadataTransient(metadata: SecretMetadata): Uint8Array {
  // msgpackr writes a plain Map as a map (integer keys), but a subclass as an object of its fields.
  return packTransient(packr, { ...metadata, versions: new Map(metadata.versions) });
}

/** The metadata of a secret before its first write: no version, nothing set. */
export function emptyMetadata(at: number, maxVersions: number): SecretMetadata {
  return {
    created: at,
    updated: at,
    current: 0,
    maxVersions,
    casRequired: false,
    deleteVersionAfterMs: 0,
    owner: "",
    rotationPeriodMs: 0,
    custom: {},
    versions: storedVersions([]),
    generator: null,
    rotationOverlapMs: 0,
    lastRotated: 0,
    nextRotationAt: 0,
    rotationFailures: 0,
    lastRotationError: "",
    expiresAt: 0,
  };
}

/** The metadata of stored bytes, frozen; throws when the bytes are not a metadata record. */
export function decodeMetadata(bytes: Uint8Array): SecretMetadata {
  const raw: unknown = packr.unpack(bytes);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || ArrayBuffer.isView(raw))
    throw new Error("the record is not a map");
  // Completed in place: a copy spread from msgpackr's object measured 500 bytes more once frozen,
  // in every cached record.
  const record = raw as { -readonly [field in keyof SecretMetadata]?: unknown };
  if (typeof record.current !== "number") throw new Error("the record has no current version");
  record.versions = versionsOf(record.versions);
  // Fields that records written before they existed lack.
  record.generator ??= null;
  record.rotationOverlapMs ??= 0;
  record.lastRotated ??= 0;
  record.nextRotationAt ??= 0;
  record.rotationFailures ??= 0;
  record.lastRotationError ??= "";
  record.expiresAt ??= 0;
  return freezeMetadata(record as SecretMetadata);
}

/**
 * A secret's versions as a record holds them: a Map whose set, delete and clear throw once it is
 * built (Object.freeze does not stop a Map's methods).
 */
class StoredVersions extends Map<number, VersionRecord> {
  private readonly built: boolean;

  constructor(entries: Iterable<readonly [number, VersionRecord]>) {
    super(entries);
    this.built = true;
  }

  override set(version: number, record: VersionRecord): this {
    // Map's constructor adds the entries through set, before `built` is.
    if (this.built) refuseChange();
    return super.set(version, record);
  }

  override delete(): boolean {
    return refuseChange();
  }

  override clear(): void {
    refuseChange();
  }
}

function refuseChange(): never {
  throw new TypeError("the versions of a metadata record cannot be changed: copy them");
}

/** Versions for a metadata record, from entries oldest first; they cannot be changed after. */
export function storedVersions(
  entries: Iterable<readonly [number, VersionRecord]>,
): ReadonlyMap<number, VersionRecord> {
  return new StoredVersions(entries);
}

/** Freezes a metadata record and what it holds: a cached record is shared and stays as stored. */
export function freezeMetadata(metadata: SecretMetadata): SecretMetadata {
  if (Object.isFrozen(metadata)) return metadata;
  if (!(metadata.versions instanceof StoredVersions))
    throw new TypeError("a record's versions come from storedVersions()");
  for (const record of metadata.versions.values()) Object.freeze(record);
  deepFreeze(metadata.custom);
  deepFreeze(metadata.generator);
  return Object.freeze(metadata);
}

/** Versions by number, oldest first, from the decoded map (keys are decimal strings on an object). */
function versionsOf(value: unknown): ReadonlyMap<number, VersionRecord> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error("the record has no versions");
  const numbered: [number, VersionRecord][] = [];
  for (const [key, record] of Object.entries(value)) {
    const version = Number(key);
    if (!Number.isSafeInteger(version) || version < 1) throw new Error(`a version is numbered ${key}`);
    numbered.push([version, record as VersionRecord]);
  }
  return storedVersions(numbered.sort((a, b) => a[0] - b[0]));
}

function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value))
    return;
  Object.freeze(value);
  for (const field of Object.values(value)) deepFreeze(field);
}
