// The commands of the secret state machine, as they travel in the Raft log: MessagePack
// (msgpackr, without its record extension, so an encoding depends on nothing but the command)
// with a schema version. Everything a command needs to apply deterministically is inside it: the
// ciphertext (encrypted by the proposer through the barrier), the time (the proposer's clock),
// the check-and-set expectation, the client's request id (applied-requests.ts). Never a plaintext
// value.

import { Packr } from "msgpackr";
import { packOwned } from "../msgpack-owned.js";
import { type CommandRequest, validateRequestId } from "./applied-requests.js";
import { StateError } from "./errors.js";

export const commandSchemaVersion = 1;

export interface SecretMetadataChanges {
  readonly maxVersions?: number;
  readonly casRequired?: boolean;
  /** Versions older than this are no longer served (0: never). */
  readonly deleteVersionAfterMs?: number;
  readonly owner?: string;
  /** How often the secret should rotate (0: no schedule). */
  readonly rotationPeriodMs?: number;
  /** Replaces the whole custom metadata map. */
  readonly custom?: Readonly<Record<string, string>>;
  /**
   * What a rotation writes (server/lifecycle/generators.ts; opaque here, validated by the
   * proposer); null removes it and with it the schedule.
   */
  readonly generator?: Readonly<Record<string, unknown>> | null;
  /** How long the version a rotation replaced stays readable (0: not after the rotation). */
  readonly rotationOverlapMs?: number;
  /** When the whole secret expires (ms since the epoch; 0: never). */
  readonly expiresAt?: number;
}

export type SecretCommand =
  | {
      readonly op: "kv.put";
      readonly path: string;
      readonly ciphertext: Uint8Array;
      readonly cas: number | null;
      readonly at: number;
      /** Written by a rotation: the version it replaces stops being served after the overlap. */
      readonly rotation?: true;
      readonly request?: CommandRequest;
    }
  | {
      /** A rotation that failed: counted, its reason kept, the next attempt scheduled with backoff. */
      readonly op: "kv.rotationFailed";
      readonly path: string;
      readonly error: string;
      readonly at: number;
    }
  | {
      readonly op: "kv.delete";
      readonly path: string;
      readonly versions: readonly number[];
      readonly at: number;
      readonly request?: CommandRequest;
    }
  | {
      readonly op: "kv.undelete";
      readonly path: string;
      readonly versions: readonly number[];
      readonly at: number;
      readonly request?: CommandRequest;
    }
  | {
      readonly op: "kv.destroy";
      readonly path: string;
      readonly versions: readonly number[];
      readonly at: number;
      readonly request?: CommandRequest;
    }
  | {
      readonly op: "kv.metadata";
      readonly path: string;
      readonly changes: SecretMetadataChanges;
      readonly at: number;
      readonly request?: CommandRequest;
    }
  | { readonly op: "kv.deleteAll"; readonly path: string; readonly at: number }
  | {
      readonly op: "sys.put";
      readonly area: SystemArea;
      /** The record's name in its area (a policy name, a token's keyed hash, a lease id, ...). */
      readonly path: string;
      /** Barrier ciphertext (the keyring: wrapped by the root key; the seal record: see systemAreas). */
      readonly value: Uint8Array;
      readonly at: number;
      /** Check-and-set: the SHA-256 of the value the record must hold now (absent: no check). */
      readonly ifDigest?: Uint8Array;
    }
  | {
      readonly op: "sys.delete";
      readonly area: SystemArea;
      readonly path: string;
      readonly at: number;
      readonly ifDigest?: Uint8Array;
    }
  | {
      /**
       * System records written together or not at all, and only while none of `ifAbsent` exists:
       * what init writes (the keyring, the root token, the seal record last), the PKI's CA. Two
       * such writes proposed by two leaders at once cannot both apply, as two plain puts could.
       */
      readonly op: "sys.putAll";
      readonly path: "";
      readonly records: readonly SystemRecordPut[];
      readonly ifAbsent: readonly SystemRecordName[];
      readonly at: number;
    }
  | {
      /**
       * Records of a snapshot being restored into an uninitialized cluster, written as they are
       * (ciphertext and metadata; checked against their checksums on the leader before proposing).
       */
      readonly op: "state.load";
      readonly path: "";
      readonly records: readonly { readonly key: Uint8Array; readonly value: Uint8Array }[];
      readonly at: number;
    };

/**
 * The reserved areas for what the server keeps beside secrets, each as encrypted as a secret:
 * policies, token records (only keyed hashes of token ids name them), leases, the keyring
 * (wrapped by the root key), the audit HMAC key and identity bindings; and the seal record (hsm/seal-record.ts),
 * which a sealed node must read to unseal and so is not barrier-encrypted: it holds only the root
 * key wrapped by each seal, share digests and check values. Likewise the member records (a node's
 * peer and client addresses, by node id), which every node needs to reach the others. Users'
 * paths can never reach them.
 * New areas go at the end: an area's position is part of its records' keys.
 */
export const systemAreas = [
  "policy",
  "token",
  "lease",
  "keyring",
  "audit-key",
  "seal",
  "member",
  "identity",
  /** The PKI engine's CA (its key inside the barrier ciphertext) and roles. */
  "pki",
  /** Revoked certificates not yet expired: what the revocation list names. */
  "crl",
  /** Identities refused on every node after an emergency revocation. */
  "disabled-identity",
  /**
   * The cluster's own records: which features every member understands (plain JSON, not secret;
   * server/peer/cluster-features.ts).
   */
  "cluster",
  /** Token roles: what tokens created against each may be (server/access/access-records.ts). */
  "token-role",
] as const;
export type SystemArea = (typeof systemAreas)[number];

/**
 * The system records looked for by name. The first two are written by the leader at init; the
 * seal record again by rekey, seal migration and HSM key rotation, the keyring by rotation.
 */
export const wellKnownRecords = {
  /** hsm/seal-record.ts as JSON: how the root key is protected. Read while sealed. */
  seal: { area: "seal", name: "current" },
  /** The keyring wrapped by the root key (storage/barrier/root-key-wrap.ts). */
  keyring: { area: "keyring", name: "current" },
  /**
   * A snapshot restore under way (plain JSON, when it began): written with the restore's keyring,
   * its first entry, and removed after its seal record; init is refused while it stands.
   */
  restoring: { area: "cluster", name: "restoring" },
} as const satisfies Record<string, { area: SystemArea; name: string }>;

/** A system record by area and name. */
export interface SystemRecordName {
  readonly area: SystemArea;
  readonly path: string;
}

/** A well-known record's name as commands carry it. */
export function systemRecordName(record: {
  readonly area: SystemArea;
  readonly name: string;
}): SystemRecordName {
  return { area: record.area, path: record.name };
}

/** One record of a `sys.putAll`: its value as a `sys.put` carries it. */
export interface SystemRecordPut extends SystemRecordName {
  readonly value: Uint8Array;
}

/** The most records one `sys.putAll` writes or checks: a handful by design, not a bulk load. */
export const systemPutAllRecordsMax = 16;

export type SecretCommandOp = SecretCommand["op"];

/**
 * Decoded bytes (a ciphertext, a system record's value) are copies, not views of the entry's data.
 * Some outlive the apply by hours: the access view keeps every token, policy and lease record as
 * it was applied. A view would keep what the entry was read from: on a follower the whole Raft
 * batch it arrived in (every write replicated with it).
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, copyBuffers: true });

export function encodeCommand(command: SecretCommand): Uint8Array {
  return packOwned(packr, { v: commandSchemaVersion, ...command });
}

/** Decodes and checks the shape of a command read from the log; never trusts it. */
export function decodeCommand(data: Uint8Array): SecretCommand {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (error) {
    throw new StateError("MALFORMED_COMMAND", "a log entry is not a MessagePack command", { cause: error });
  }
  const fail = (why: string): never => {
    throw new StateError("MALFORMED_COMMAND", `malformed command: ${why}`);
  };
  if (typeof raw !== "object" || raw === null) return fail("not a map");
  const record = raw as Record<string, unknown>;
  if (record.v !== commandSchemaVersion) fail(`unknown schema version ${String(record.v)}`);
  const { op, path, at } = record;
  if (typeof path !== "string") fail("path is not a string");
  if (typeof at !== "number" || !Number.isFinite(at)) fail("at is not a time");
  const versions = (): number[] => {
    const list = record.versions;
    if (!Array.isArray(list) || !list.every((n) => Number.isSafeInteger(n) && n > 0))
      fail("versions is not a list of positive integers");
    return list as number[];
  };
  const p = path as string;
  const t = at as number;
  switch (op) {
    case "kv.put": {
      const { ciphertext, cas } = record;
      if (!(ciphertext instanceof Uint8Array)) fail("ciphertext is not bytes");
      if (cas !== null && !(Number.isSafeInteger(cas) && (cas as number) >= 0))
        fail("cas is neither null nor a version");
      const bytes = ciphertext as Uint8Array;
      if (record.rotation !== undefined && record.rotation !== true) fail("rotation is not true");
      return {
        op,
        path: p,
        ciphertext: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        cas: cas as number | null,
        at: t,
        ...(record.rotation === true ? { rotation: true as const } : {}),
        ...requestOf(record.request),
      };
    }
    case "kv.rotationFailed": {
      const { error } = record;
      if (typeof error !== "string") fail("error is not a string");
      return { op, path: p, error: error as string, at: t };
    }
    case "kv.delete":
    case "kv.undelete":
    case "kv.destroy":
      return { op, path: p, versions: versions(), at: t, ...requestOf(record.request) };
    case "kv.metadata": {
      const changes = record.changes;
      if (typeof changes !== "object" || changes === null || Array.isArray(changes))
        fail("changes is not a map");
      return { op, path: p, changes: changes as SecretMetadataChanges, at: t, ...requestOf(record.request) };
    }
    case "kv.deleteAll":
      return { op, path: p, at: t };
    case "sys.put":
    case "sys.delete": {
      const area = record.area;
      if (typeof area !== "string" || !(systemAreas as readonly string[]).includes(area))
        fail("area is not a system area");
      const { ifDigest } = record;
      if (ifDigest !== undefined && !(ifDigest instanceof Uint8Array && ifDigest.length === 32))
        fail("ifDigest is not a SHA-256 digest");
      const check = ifDigest === undefined ? {} : { ifDigest: Uint8Array.from(ifDigest as Uint8Array) };
      if (op === "sys.delete") return { op, area: area as SystemArea, path: p, at: t, ...check };
      const value = record.value;
      if (!(value instanceof Uint8Array) || value.length === 0) fail("value is not bytes");
      const bytes = value as Uint8Array;
      return {
        op,
        area: area as SystemArea,
        path: p,
        value: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        at: t,
        ...check,
      };
    }
    case "sys.putAll": {
      if (p !== "") fail("path is not empty");
      const names = (list: unknown, what: string): unknown[] => {
        if (!Array.isArray(list) || list.length > systemPutAllRecordsMax)
          return fail(`${what} is not a list of at most ${systemPutAllRecordsMax}`);
        return list;
      };
      const nameOf = (entry: unknown): SystemRecordName => {
        const { area, path: name } = (entry ?? {}) as { area?: unknown; path?: unknown };
        if (typeof area !== "string" || !(systemAreas as readonly string[]).includes(area))
          fail("a record's area is not a system area");
        if (typeof name !== "string") fail("a record's path is not a string");
        return { area: area as SystemArea, path: name as string };
      };
      const records = names(record.records, "records").map((entry): SystemRecordPut => {
        const { value } = (entry ?? {}) as { value?: unknown };
        if (!(value instanceof Uint8Array) || value.length === 0) fail("a record's value is not bytes");
        const bytes = value as Uint8Array;
        return { ...nameOf(entry), value: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
      });
      if (records.length === 0) fail("records is empty");
      return { op, path: "", records, ifAbsent: names(record.ifAbsent, "ifAbsent").map(nameOf), at: t };
    }
    case "state.load": {
      const records = record.records;
      if (!Array.isArray(records)) return fail("records is not a list");
      const checked = records.map((entry: unknown) => {
        const { key, value } = (entry ?? {}) as { key?: unknown; value?: unknown };
        if (!(key instanceof Uint8Array) || key.length === 0 || !(value instanceof Uint8Array)) {
          return fail("a record is not a key and a value");
        }
        return {
          key: new Uint8Array(key.buffer, key.byteOffset, key.byteLength),
          value: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
        };
      });
      return { op, path: "", records: checked, at: t };
    }
    default:
      return fail(`unknown operation ${JSON.stringify(op)}`);
  }
}

/** A command's client request (its id and fingerprint), checked; `{}` when it has none. */
function requestOf(raw: unknown): { request?: CommandRequest } {
  if (raw === undefined) return {};
  const { id, fingerprint } = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  if (typeof id !== "string" || !(fingerprint instanceof Uint8Array) || fingerprint.length !== 32) {
    throw new StateError("MALFORMED_COMMAND", "malformed command: request is not an id and a SHA-256 digest");
  }
  try {
    validateRequestId(id);
  } catch (error) {
    throw new StateError("MALFORMED_COMMAND", `malformed command: ${(error as Error).message}`);
  }
  return { request: { id, fingerprint: Uint8Array.from(fingerprint) } };
}
