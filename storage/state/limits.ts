// The limits of the secret state machine, named and validated in one place. Paths, values and
// metadata are checked where a command is built (so a bad request gets a clear error before it
// reaches Raft) and again where it is applied (so a bad entry can never corrupt state).

import { StateError } from "./errors.js";

export interface StateLimits {
  /** Path length in bytes. */
  readonly pathBytesMax: number;
  /** Plaintext bytes of one version (1 MiB, like etcd and Vault). */
  readonly valueBytesMax: number;
  /** Versions kept per secret unless its metadata says otherwise. */
  readonly maxVersionsDefault: number;
  /** The highest max_versions a secret may ask for. */
  readonly maxVersionsMax: number;
  readonly customMetadataKeysMax: number;
  readonly customMetadataKeyBytesMax: number;
  readonly customMetadataValueBytesMax: number;
  /** Names one List page returns at most. */
  readonly listPageMax: number;
}

export const defaultStateLimits: StateLimits = {
  pathBytesMax: 512,
  valueBytesMax: 1024 * 1024,
  maxVersionsDefault: 10,
  maxVersionsMax: 1000,
  customMetadataKeysMax: 64,
  customMetadataKeyBytesMax: 128,
  customMetadataValueBytesMax: 512,
  listPageMax: 1000,
};

/** One path segment: letters, digits, '.', '_', '-' (and not "." or ".."). */
const segmentPattern = /^[A-Za-z0-9._-]+$/;

/**
 * A secret's path: segments joined by '/', each of letters, digits, '.', '_' or '-'; no empty,
 * '.' or '..' segment, no leading or trailing '/'. The charset keeps paths safe as storage keys
 * (no NUL) and unambiguous in logs and policies.
 */
export function validatePath(
  path: unknown,
  limits: StateLimits = defaultStateLimits,
): asserts path is string {
  const why = typeof path === "string" ? pathProblem(path, limits) : "a path must be a non-empty string";
  if (why !== null) throw invalid("path", path, why);
}

/** A List prefix: empty (everything) or a path, optionally ending in '/'. */
export function validatePrefix(
  prefix: unknown,
  limits: StateLimits = defaultStateLimits,
): asserts prefix is string {
  if (prefix === "") return;
  if (typeof prefix !== "string") throw new StateError("INVALID_ARGUMENT", "a prefix must be a string");
  // "/" alone was refused as 'invalid path ""', and "app//" as 'invalid path "app/"': the message
  // names what the caller gave.
  if (prefix === "/")
    throw invalid(
      "prefix",
      prefix,
      'a prefix does not start with \'/\' (give "" for everything, or e.g. "app/")',
    );
  const why = pathProblem(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix, limits);
  if (why !== null) throw invalid("prefix", prefix, why);
}

/** What is wrong with `text` as a path, or null. */
function pathProblem(text: string, limits: StateLimits): string | null {
  if (text.length === 0) return "a path must be a non-empty string";
  if (Buffer.byteLength(text) > limits.pathBytesMax) return `longer than ${limits.pathBytesMax} bytes`;
  for (const segment of text.split("/")) {
    if (segment === "") return "empty segment (leading, trailing or double '/')";
    if (segment === "." || segment === "..") return "'.' and '..' are not allowed as segments";
    if (!segmentPattern.test(segment)) return "only letters, digits, '.', '_', '-' and '/' are allowed";
  }
  return null;
}

function invalid(what: "path" | "prefix", given: unknown, why: string): StateError {
  return new StateError(
    "INVALID_ARGUMENT",
    `invalid ${what} ${JSON.stringify(String(given).slice(0, 80))}: ${why}`,
  );
}

export function validateValueSize(plaintextBytes: number, limits: StateLimits = defaultStateLimits): void {
  if (plaintextBytes > limits.valueBytesMax) {
    throw new StateError(
      "VALUE_TOO_LARGE",
      `a value of ${plaintextBytes} bytes exceeds the limit of ${limits.valueBytesMax}`,
    );
  }
}

/**
 * The versions a delete, undelete or destroy names: each from 1, and no more than a secret can
 * keep (maxVersionsMax), so that a request cannot put an unbounded list into the Raft log.
 */
export function validateVersionList(
  versions: readonly number[],
  limits: StateLimits = defaultStateLimits,
): void {
  if (versions.length > limits.maxVersionsMax)
    throw new StateError(
      "INVALID_ARGUMENT",
      `${versions.length} versions named; one request names at most ${limits.maxVersionsMax} (the most a secret keeps)`,
    );
  for (const version of versions)
    if (!Number.isSafeInteger(version) || version < 1)
      throw new StateError("INVALID_ARGUMENT", `versions are numbered from 1: got ${version}`);
}

export function validateMaxVersions(
  maxVersions: unknown,
  limits: StateLimits = defaultStateLimits,
): asserts maxVersions is number {
  if (
    !Number.isSafeInteger(maxVersions) ||
    (maxVersions as number) < 1 ||
    (maxVersions as number) > limits.maxVersionsMax
  ) {
    throw new StateError(
      "INVALID_ARGUMENT",
      `max_versions must be an integer from 1 to ${limits.maxVersionsMax}`,
    );
  }
}

export function validateCustomMetadata(
  custom: unknown,
  limits: StateLimits = defaultStateLimits,
): asserts custom is Record<string, string> {
  if (typeof custom !== "object" || custom === null || Array.isArray(custom)) {
    throw new StateError("INVALID_ARGUMENT", "custom metadata must be an object of string values");
  }
  const entries = Object.entries(custom);
  if (entries.length > limits.customMetadataKeysMax) {
    throw new StateError(
      "INVALID_ARGUMENT",
      `custom metadata has ${entries.length} keys; the limit is ${limits.customMetadataKeysMax}`,
    );
  }
  for (const [key, value] of entries) {
    if (key.length === 0 || Buffer.byteLength(key) > limits.customMetadataKeyBytesMax) {
      throw new StateError(
        "INVALID_ARGUMENT",
        `a custom metadata key must be 1 to ${limits.customMetadataKeyBytesMax} bytes`,
      );
    }
    if (typeof value !== "string" || Buffer.byteLength(value) > limits.customMetadataValueBytesMax) {
      throw new StateError(
        "INVALID_ARGUMENT",
        `custom metadata ${JSON.stringify(key)} must be a string of at most ${limits.customMetadataValueBytesMax} bytes`,
      );
    }
  }
}

/** The longest request id, in characters. A UUID has 36. */
export const requestIdCharsMax = 128;
const requestIdPattern = /^[A-Za-z0-9._:-]+$/;

/** Whether `id` is 1 to 128 characters of [A-Za-z0-9._:-]. */
export function isWellFormedRequestId(id: string): boolean {
  return id.length > 0 && id.length <= requestIdCharsMax && requestIdPattern.test(id);
}
