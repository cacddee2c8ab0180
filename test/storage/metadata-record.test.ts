// A secret's metadata record: what it stores and what it decodes, including records written before
// versions were a Map in memory (a MessagePack map with decimal string keys, and fields missing).

import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import {
  decodeMetadata,
  emptyMetadata,
  encodeMetadataTransient,
  freezeMetadata,
  storedVersions,
} from "../../storage/state/metadata-record.js";
import type { SecretMetadata, VersionRecord } from "../../storage/state/secret-state.js";

function metadataWith(versions: [number, VersionRecord][]): SecretMetadata {
  return {
    ...emptyMetadata(1, 10),
    updated: 2,
    current: versions.at(-1)?.[0] ?? 0,
    owner: "team-a",
    custom: { tier: "1" },
    versions: storedVersions(versions),
    generator: { kind: "random", bytes: 32 },
  };
}

describe("metadata records", () => {
  it("encodes a MessagePack map whose versions are keyed by integers", () => {
    const encoded = encodeMetadataTransient(
      metadataWith([[7, { created: 10, deleted: null, destroyed: false }]]),
    );
    const stored = new Packr({ useRecords: false, mapsAsObjects: false }).unpack(encoded) as Map<
      string,
      unknown
    >;
    expect(stored.get("current")).toBe(7);
    expect([...(stored.get("versions") as Map<unknown, unknown>).keys()]).toEqual([7]);
  });

  it("decodes what it encodes: versions by number, oldest first, everything else as it was", () => {
    const written = metadataWith([
      [899, { created: 10, deleted: null, destroyed: false }],
      [900, { created: 11, deleted: 12, destroyed: false, retireAt: 13 }],
      [1_000_000, { created: 14, deleted: null, destroyed: true }],
    ]);
    const read = decodeMetadata(encodeMetadataTransient(written));
    expect(read).toEqual(written);
    expect([...read.versions.keys()]).toEqual([899, 900, 1_000_000]);
    expect(read.versions.get(900)?.retireAt).toBe(13);
  });

  it("reads a record of the earlier form: versions keyed by decimal strings, newer fields missing", () => {
    const earlier = new Packr({ useRecords: false, mapsAsObjects: true });
    const bytes = earlier.pack({
      created: 1,
      updated: 2,
      current: 12,
      maxVersions: 3,
      casRequired: true,
      deleteVersionAfterMs: 0,
      owner: "",
      rotationPeriodMs: 0,
      custom: {},
      versions: {
        "10": { created: 5, deleted: null, destroyed: false },
        "11": { created: 6, deleted: null, destroyed: true },
        "12": { created: 7, deleted: null, destroyed: false },
      },
    });
    const read = decodeMetadata(bytes);
    expect([...read.versions]).toEqual([
      [10, { created: 5, deleted: null, destroyed: false }],
      [11, { created: 6, deleted: null, destroyed: true }],
      [12, { created: 7, deleted: null, destroyed: false }],
    ]);
    expect(read).toMatchObject({
      current: 12,
      casRequired: true,
      generator: null,
      rotationOverlapMs: 0,
      lastRotated: 0,
      nextRotationAt: 0,
      rotationFailures: 0,
      lastRotationError: "",
      expiresAt: 0,
    });
  });

  it("refuses bytes that are not a metadata record", () => {
    const packr = new Packr({ useRecords: false });
    expect(() => decodeMetadata(packr.pack([1, 2]))).toThrow(/not a map/);
    expect(() => decodeMetadata(packr.pack({ versions: {} }))).toThrow(/no current version/);
    expect(() => decodeMetadata(packr.pack({ current: 1 }))).toThrow(/no versions/);
    expect(() => decodeMetadata(packr.pack({ current: 1, versions: { x: {} } }))).toThrow(/numbered x/);
    expect(() => decodeMetadata(Uint8Array.of(0xc1))).toThrow();
  });

  it("freezes a record, its versions (a Map's methods too), its custom map and its generator", () => {
    expect(() => freezeMetadata({ ...metadataWith([]), versions: new Map() })).toThrow(/storedVersions/);
    const frozen = freezeMetadata(metadataWith([[1, { created: 1, deleted: null, destroyed: false }]]));
    const versions = frozen.versions as Map<number, VersionRecord>;
    expect(() => versions.set(2, { created: 2, deleted: null, destroyed: false })).toThrow(TypeError);
    expect(() => versions.delete(1)).toThrow(TypeError);
    expect(() => versions.clear()).toThrow(TypeError);
    expect(() => {
      (versions.get(1) as { deleted: number | null }).deleted = 5;
    }).toThrow(TypeError);
    expect(() => {
      (frozen.custom as Record<string, string>).tier = "2";
    }).toThrow(TypeError);
    expect(() => {
      (frozen.generator as Record<string, unknown>).bytes = 64;
    }).toThrow(TypeError);
    // A copy is free to change.
    const copy = new Map(frozen.versions);
    copy.set(2, { created: 2, deleted: null, destroyed: false });
    expect(copy.size).toBe(2);
    expect(frozen.versions.size).toBe(1);
  });
});
