// The audit trail's format: JSON lines, each carrying the SHA-256 of the line before it (`prev`),
// so editing, deleting or reordering a line breaks the chain where it happened. Every file starts
// with a header that carries the hash of the previous file's last line, so rotation keeps one
// chain across files and a deleted file shows. Periodic checkpoints carry an HMAC of the chain so
// far under the cluster's audit key: without the key nobody can rewrite a file and its chain
// consistently. A trail its node closed cleanly ends with a closing checkpoint (`closed: true`,
// which its MAC covers: a periodic checkpoint that happens to be a running trail's last line is not
// one); a trail that does not is a running node's, or was cut short, and the verifier says so.
// Format 1 had no closing checkpoints: there, any checkpoint at the end was one.
//
// Sensitive fields never appear in the clear: they are replaced by "hmac-sha256:<hex>" under the
// audit key, so an auditor holding a value can check whether it was read, and the log cannot leak it.

import { createHmac, hash, timingSafeEqual } from "node:crypto";

export const auditFormatVersion = 2;
export const genesisHash = "0".repeat(64);

export type AuditEntryType = "header" | "request" | "response" | "checkpoint";

/** What a line holds besides the chain fields the writer adds. */
export interface AuditRecord {
  readonly type: "request" | "response";
  readonly requestId: string;
  readonly identity: string;
  readonly method: string;
  readonly path?: string;
  readonly capability?: string;
  /** Response: "ok", "denied", "error". */
  readonly outcome?: string;
  /** Response: the gRPC status name. */
  readonly code?: string;
  /** Response: the strongroom reason of a refusal (e.g. PERMISSION_DENIED, TOKEN_INVALID). */
  readonly reason?: string;
  /** Response: why access control refused, naming the deciding policy and rule (never sent to the client). */
  readonly detail?: string;
  readonly latencyMs?: number;
  /** The follower that forwarded the call to this node (the leader), if any. */
  readonly forwardedBy?: string;
  /**
   * The request id the client gave a write (Secrets' `request_id`), when well formed: entries with
   * the same one are a write and its retries, which the cluster applied at most once.
   */
  readonly clientRequestId?: string;
  /** Fields whose values were replaced by their HMAC (e.g. a value written, a token). */
  readonly hashed?: Readonly<Record<string, string>>;
  /**
   * Request: the fields that name what the call acts on or grants, in the clear as paths are (a
   * policy, an identity, a token role, a token's accessor, a member, a lease, a prefix; the
   * policies granted). Never a value, a token or a share.
   */
  readonly target?: Readonly<Record<string, AuditedValue>>;
  /**
   * Response: what the call made (a revision, a version, a new token's accessor, a lease id, a
   * certificate's serial); a token it issued is in `hashed.issuedToken`.
   */
  readonly result?: Readonly<Record<string, AuditedValue>>;
}

/** A request or response field as an entry records it (long strings and lists cut). */
export type AuditedValue = string | number | boolean | readonly string[];

export interface AuditLine {
  readonly v: number;
  readonly seq: number;
  readonly time: string;
  readonly node: string;
  readonly type: AuditEntryType;
  readonly prev: string;
  readonly [field: string]: unknown;
}

export function hashLine(line: string): string {
  // The one-shot form: half the CPU of createHash's object, update and digest (0.5 against 1.1 µs
  // a line in a scratch loop), and every entry a node writes is hashed.
  return hash("sha256", line, "hex");
}

/** The HMAC a sensitive value is replaced with. */
export function hashSensitive(auditKey: Uint8Array, value: Uint8Array | string): string {
  return `hmac-sha256:${createHmac("sha256", auditKey).update(value).digest("hex")}`;
}

/**
 * A checkpoint's MAC over the chain so far (the hash of the line before it), its sequence number
 * and whether it closes the trail.
 */
export function checkpointMac(auditKey: Uint8Array, seq: number, prev: string, closing = false): string {
  return createHmac("sha256", auditKey)
    .update(`strongroom audit checkpoint v1 ${seq} ${prev}${closing ? " closed" : ""}`)
    .digest("hex");
}

export function macMatches(expected: string, actual: string): boolean {
  const a = Buffer.from(expected, "hex");
  const b = Buffer.from(actual, "hex");
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}
