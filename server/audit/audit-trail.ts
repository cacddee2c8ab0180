// The node's audit trail: every call on the client port gets a request entry before this node
// changes anything for it, and a response entry after it, in every configured sink
// (audit-file.ts). "No audit, no answer": a call is answered only once at least one sink has its
// request entry on disk, and is refused with UNAVAILABLE (reason AUDIT_UNAVAILABLE) when none can
// take it ("has it" as the files' durability says: on disk, or written to the operating system;
// audit-file.ts). Its checks and a forward to the leader (which records the call itself before
// acting) run while the entry is written; a read, which changes nothing, runs first and has both
// its entries written together (interceptor() says exactly what). A failing sink does not take the
// node down while another works; it is counted, shown in metrics, and retried on every entry.
//
// Sensitive fields (a value written, a share) are never written: while the node is unsealed they
// become an HMAC under the audit key, which is derived from the root key (so every unsealed node
// has it, and it is stored nowhere); while sealed, they are written as "[redacted]" and no
// checkpoint is written (its MAC needs the key). What a call acted on (the request fields that
// name a policy, an identity, a role, an accessor, a member, a lease) and what it made (a revision,
// a version, a new token's accessor) are recorded in the clear, as paths are; a token a call issued
// is recorded as the HMAC its holder's calls will carry.

import { createHmac, randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { isWellFormedRequestId } from "../../storage/state/index.js";
import { mapError, NodeError } from "../errors.js";
import type { Interceptor, RequestContext } from "../request.js";
import { RootDerivedKey } from "../root-derived-key.js";
import { TokenHashMemo } from "../token-hash-memo.js";
import { type AuditedValue, type AuditRecord, hashSensitive } from "./audit-chain.js";
import { type AuditDurability, AuditFile } from "./audit-file.js";
import { AuditSocket } from "./audit-socket.js";

export interface AuditTrailOptions {
  readonly directories: readonly string[];
  /** Collectors to stream entries to ("unix:<path>", "tcp:<host>:<port>"), besides the files. */
  readonly sockets?: readonly string[];
  readonly node: string;
  readonly maxFileBytes: number;
  readonly checkpointEvery: number;
  /** When a file has an entry: on disk, or written to the OS and synced within `syncIntervalMs`. */
  readonly durability: AuditDurability;
  readonly syncIntervalMs: number;
  /** The root key while unsealed (the audit key is derived from it), or null while sealed. */
  readonly rootKey: () => Uint8Array | null;
  readonly registry: Registry;
  /**
   * A sink with entries outstanding that has taken none for this long is not trusted to keep up:
   * calls that change something wait for their request entry before going on (interceptor()).
   */
  readonly stalledAfterMs?: number;
  /** Told when a sink starts failing (with the error) and when it writes again (null), for the log. */
  readonly onSinkChange?: (sink: string, error: Error | null) => void;
}

/**
 * How long a sink may take no entry, with entries outstanding, before calls stop going on while
 * their entries are written: far above a busy disk's write (4-5 ms here under load), far below
 * a call's deadline.
 */
const defaultStalledAfterMs = 1000;

/** Request fields whose values never reach the audit trail in the clear. */
const sensitiveFields = ["value", "share", "document"];

/**
 * Request fields that name what a call acts on or grants, recorded in the clear as paths are:
 * without them an entry says a policy was written or a token revoked, not which. Top-level fields
 * only, and none of them ever holds a value, a token or a share (a generator's nested fields are
 * not looked at).
 */
const targetFields = [
  "prefix",
  "name",
  "identity",
  "role",
  "accessor",
  "nodeId",
  "id",
  "policies",
  "allowedPolicies",
  "allowedNames",
  "commonName",
  "dnsNames",
  "reason",
  "paths",
  "boundIdentities",
];

/** Response fields that say what a call made, recorded in the clear. */
const resultFields = ["revision", "version", "leaseId", "serial", "disabledAtRevision"];
/** Response fields holding a token the call issued: recorded as HMACs, as the caller's token is. */
const issuedTokenFields = ["token", "rootToken"];
/** A recorded string or list is cut at this many characters or entries (a request may be 2 MiB). */
const auditedStringMax = 256;
const auditedListMax = 64;

/** The capability a method needs (for the audit entry now; for authorization with policies later). */
const capabilities: Record<string, string> = {
  Put: "update",
  Get: "read",
  Delete: "delete",
  Undelete: "update",
  Destroy: "destroy",
  List: "list",
  GetMetadata: "read",
  UpdateMetadata: "update",
  History: "read",
  Watch: "read",
};

export function deriveAuditKey(rootKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", rootKey).update("strongroom audit key v1").digest());
}

/** One place entries go: a file sink or a socket sink, opened on first use and after a failure. */
interface Sink {
  readonly name: string;
  readonly open: () => AuditFile | AuditSocket;
  opened: AuditFile | AuditSocket | null;
  failing: boolean;
  /** Entries handed to the sink and not taken (or refused) yet. */
  outstanding: number;
  /** When the sink last took or refused an entry, or was handed one while it had none outstanding. */
  progressAt: number;
}

export class AuditTrail {
  private readonly sinks: Sink[];
  private readonly failures: Counter<"sink">;
  private readonly responsesLost: Counter;
  private inFlight = 0;
  /** Abandoned (the node stopped on a fatal error): no sink takes another entry. */
  private abandoned = false;
  private readonly auditKey = new RootDerivedKey(deriveAuditKey);
  /** The audit entries' HMACs of the callers' tokens (token-hash-memo.ts). */
  private readonly tokenHashes = new TokenHashMemo(hashSensitive);

  constructor(private readonly options: AuditTrailOptions) {
    const sockets = options.sockets ?? [];
    if (options.directories.length + sockets.length === 0)
      throw new NodeError("INVALID_ARGUMENT", "the audit trail needs at least one directory or socket");
    const writeEntries = new Histogram({
      name: "strongroom_audit_write_entries",
      help: "Entries per write of an audit file (group commit: calls arriving together share a write).",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [options.registry],
    });
    // Every call waits for its entries' write: a slow audit disk shows here before in the calls.
    const writeSeconds = new Histogram({
      name: "strongroom_audit_write_seconds",
      help: "Time of one write of an audit file (its entries written, and synced with durability disk), by sink.",
      labelNames: ["sink"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [options.registry],
    });
    // With durability "os" the disk's speed shows here instead (calls do not wait for it).
    const syncSeconds = new Histogram({
      name: "strongroom_audit_background_sync_seconds",
      help: "Time of one background sync of an audit file (durability os), by sink.",
      labelNames: ["sink"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [options.registry],
    });
    this.sinks = [
      ...options.directories.map((directory) => ({
        name: directory,
        open: () =>
          AuditFile.open({
            directory,
            node: options.node,
            auditKey: null,
            maxFileBytes: options.maxFileBytes,
            checkpointEvery: options.checkpointEvery,
            durability: options.durability,
            syncIntervalMs: options.syncIntervalMs,
            onWrite: (entries, seconds) => {
              writeEntries.observe(entries);
              writeSeconds.observe({ sink: directory }, seconds);
            },
            // A failed sync breaks the file: its next entry fails and is counted as the sink's.
            onSync: (seconds) => syncSeconds.observe({ sink: directory }, seconds),
          }),
        opened: null,
        failing: false,
        outstanding: 0,
        progressAt: 0,
      })),
      ...sockets.map((address) => {
        // One sequence per socket for the node's life, across the connections it dials.
        let seq = 0;
        return {
          name: address,
          open: () =>
            new AuditSocket({ address, node: options.node, connectTimeoutMs: 1000, nextSeq: () => ++seq }),
          opened: null,
          failing: false,
          outstanding: 0,
          progressAt: 0,
        };
      }),
    ];
    this.failures = new Counter({
      name: "strongroom_audit_sink_failures_total",
      help: "Audit entries a sink failed to write, by sink (a directory or a socket address).",
      labelNames: ["sink"],
      registers: [options.registry],
    });
    // Completeness: every request entry gets its response entry, unless this counter says otherwise.
    this.responsesLost = new Counter({
      name: "strongroom_audit_responses_lost_total",
      help: "Calls whose request entry was written but whose response entry no sink could take.",
      registers: [options.registry],
    });
    const open: Gauge = new Gauge({
      name: "strongroom_audit_requests_open",
      help: "Calls with a request entry and no response entry yet (in flight).",
      registers: [options.registry],
      collect: () => open.set(this.inFlight),
    });
    const sinks = this.sinks;
    new Gauge({
      name: "strongroom_audit_sinks_failing",
      help: "Audit sinks whose last write failed.",
      registers: [options.registry],
      collect() {
        this.set(sinks.filter((sink) => sink.failing).length);
      },
    });
    // A hung disk or collector fails nothing: it only stops taking entries.
    const stalled: Gauge = new Gauge({
      name: "strongroom_audit_sinks_stalled",
      help: "Audit sinks with entries outstanding that took none for a second: a hung disk or collector.",
      registers: [options.registry],
      collect: () => stalled.set(this.stalledSinks().length),
    });
  }

  /**
   * The interceptor that writes the entries around every unary call. A call is answered only once
   * its request entry is written, refused if no sink took it ("no audit, no answer"), and nothing
   * it changes is changed before the entry is written:
   *
   * - a read changes nothing: it runs first, and its request and response entries are written
   *   together after it (auditedRead);
   * - any other call goes on while its request entry is written: its checks (rate limits,
   *   authorization) run meanwhile; it runs on this node only once the entry is written (the
   *   `actAfter` it hands the chain); one forwarded to the leader is sent at once, as the leader
   *   records it (naming this node) before it acts;
   * - while a sink of this node is failing, or has taken none of its entries for `stalledAfterMs`
   *   (a hung disk or collector), a call that is not a read waits for its entry before anything,
   *   as it always did, so that a node whose audit is broken forwards nothing. A call forwarded
   *   just as a sink fails or hangs may be done by the leader (and recorded there) though this
   *   node does not answer it: it is refused with AUDIT_FAILED_AFTER_FORWARD (not
   *   AUDIT_UNAVAILABLE, which says nothing was done), or reaches its deadline: an unknown
   *   outcome, as when the leader goes away after it took the call;
   * - a call done whose response entry no sink takes is not answered either: AUDIT_FAILED_AFTER_ACT,
   *   an unknown outcome too (withheldAnswer).
   */
  interceptor(): Interceptor {
    return async (context, request, next, method) => {
      if (method.readOnly) return this.auditedRead(context, request, next);
      if (this.sinksKeepUp()) return this.auditedAlongside(context, request, next);
      const finish = await this.begin(context, request);
      let response: unknown;
      try {
        response = await next();
      } catch (error) {
        // The call failed either way; its response entry is written on a best-effort basis.
        await finish(error).catch(() => {});
        throw error;
      }
      await finish(null, response).catch(withheldAnswer);
      return response;
    };
  }

  /**
   * Runs a call that is not a read while its request entry is written (see interceptor()), with
   * the entry as what it must await before acting here. Its latency is then the longer of the two
   * waits (the disk; the checks, or a forward), not their sum.
   */
  private async auditedAlongside(
    context: RequestContext,
    request: unknown,
    next: (actAfter?: Promise<unknown>) => Promise<unknown>,
  ): Promise<unknown> {
    const begun = this.begin(context, request);
    // Settles, never rejects: a call that fails while the request entry is refused is not left
    // unhandled.
    const ran = next(begun).then(
      (response) => ({ failed: false as const, response }),
      (error: unknown) => ({ failed: true as const, error }),
    );
    let finish: (error: unknown, response?: unknown) => Promise<void>;
    try {
      finish = await begun;
    } catch (refused) {
      // Run here, the call awaited the entry and failed with its refusal: nothing was done, and
      // the client may send it again. Forwarded, it went to the leader at once, which may have
      // done it: say so, so that the client does not take the refusal as "not done".
      const outcome = await ran;
      if (outcome.failed && outcome.error === refused) throw refused;
      throw new NodeError(
        "AUDIT_FAILED_AFTER_FORWARD",
        "no audit sink could record the request, which had been forwarded to the leader: it may have been done (read before sending it again, or send it with a request id)",
      );
    }
    const outcome = await ran;
    if (!outcome.failed) {
      await finish(null, outcome.response).catch(withheldAnswer);
      return outcome.response;
    }
    await finish(outcome.error).catch(() => {});
    throw outcome.error;
  }

  /**
   * Runs a read, then writes its request and response entries together (one durable write, not
   * two one after the other), and answers once they are written - refused if no sink took the
   * request entry. A read changes nothing, so nothing is done before its request entry that the
   * trail would miss: a read that is never answered (the node crashed meanwhile) disclosed
   * nothing, and leaves no entry. Measured: 11-13% more reads, at 1 and at 64 clients
   * (docs/performance.md).
   */
  private async auditedRead(
    context: RequestContext,
    request: unknown,
    next: () => Promise<unknown>,
  ): Promise<unknown> {
    const started = performance.now();
    const base = this.baseRecord(context, request, randomUUID());
    let failure: unknown = null;
    let response: unknown;
    try {
      response = await next();
    } catch (error) {
      failure = error;
    }
    // Appended in the same turn, the two entries go to disk in the same write.
    const requestWritten = this.write(extended(base, { type: "request" as const }));
    const responseWritten = this.writeResponse(base, started, failure, response);
    try {
      await requestWritten;
    } catch (refused) {
      await responseWritten.catch(() => {});
      throw refused;
    }
    try {
      await responseWritten;
    } catch (lost) {
      // A request entry without its response: the trail is incomplete for this call.
      this.responsesLost.inc();
      if (failure === null) throw lost;
    }
    if (failure !== null) throw failure;
    return response;
  }

  /**
   * Writes the request entry of a call (refusing it when no sink can), and returns what writes its
   * response entry: with null (and its response, if any) when it succeeded, with the error
   * otherwise. For streaming calls, which do not pass through the interceptor chain.
   */
  async begin(
    context: RequestContext,
    request: unknown,
  ): Promise<(error: unknown, response?: unknown) => Promise<void>> {
    const started = performance.now();
    const base = this.baseRecord(context, request, randomUUID());
    await this.write(extended(base, { type: "request" as const }));
    this.inFlight += 1;
    let finished = false;
    return async (error, response) => {
      if (finished) return;
      finished = true;
      this.inFlight -= 1;
      try {
        await this.writeResponse(base, started, error, response);
      } catch (failure) {
        // A request entry without its response: the trail is incomplete for this call.
        this.responsesLost.inc();
        throw failure;
      }
    };
  }

  private writeResponse(
    base: Omit<AuditRecord, "type">,
    started: number,
    error: unknown,
    response?: unknown,
  ): Promise<void> {
    if (error === null) {
      return this.write(
        extended(this.withResult(base, response), {
          type: "response" as const,
          outcome: "ok",
          code: "OK",
          latencyMs: elapsed(started),
        }),
      );
    }
    const mapped = mapError(error);
    const denied = [status.PERMISSION_DENIED, status.UNAUTHENTICATED].includes(mapped.code);
    const outcome = denied ? "denied" : "error";
    const code = statusName(mapped.code);
    const detail = error instanceof NodeError ? error.auditDetail : null;
    return this.write(
      extended(
        base,
        detail === null
          ? { type: "response" as const, outcome, code, reason: mapped.reason, latencyMs: elapsed(started) }
          : {
              type: "response" as const,
              outcome,
              code,
              reason: mapped.reason,
              detail,
              latencyMs: elapsed(started),
            },
      ),
    );
  }

  /** The audit key while the node is unsealed, else null (and the key kept so far is zeroed). */
  private currentAuditKey(): Uint8Array | null {
    const rootKey = this.options.rootKey();
    if (rootKey !== null) return this.auditKey.of(rootKey);
    this.forgetKeys();
    return null;
  }

  /**
   * Zeroes the audit key, the file sinks' copies of it and the tokens' hashes kept (the node
   * sealed). Entries written until the node is unsealed again carry no checkpoint MAC.
   */
  forgetKeys(): void {
    this.auditKey.forget();
    this.tokenHashes.forget();
    for (const sink of this.sinks) if (sink.opened instanceof AuditFile) sink.opened.setAuditKey(null);
  }

  /** Writes one entry to every sink; resolves when at least one has it on disk. */
  async write(record: AuditRecord): Promise<void> {
    if (this.abandoned) throw new NodeError("STOPPING", "this node is stopping: it records no more calls");
    const auditKey = this.currentAuditKey();
    const results = await Promise.all(
      this.sinks.map(async (sink) => {
        if (sink.outstanding === 0) sink.progressAt = performance.now();
        sink.outstanding += 1;
        try {
          sink.opened ??= sink.open();
          if (sink.opened instanceof AuditFile) sink.opened.setAuditKey(auditKey);
          await sink.opened.append(record);
          if (sink.failing) this.options.onSinkChange?.(sink.name, null);
          sink.failing = false;
          return true;
        } catch (error) {
          this.failures.inc({ sink: sink.name });
          if (!sink.failing) this.options.onSinkChange?.(sink.name, error as Error);
          sink.failing = true;
          // A broken file is reopened (a new file, linked to the chain), a socket dialled again,
          // on the next entry.
          // Closing a broken sink may fail too; it is dropped either way.
          const broken = sink.opened;
          sink.opened = null;
          Promise.resolve()
            .then(() => broken?.close())
            .catch(() => {});
          return false;
        } finally {
          sink.outstanding -= 1;
          sink.progressAt = performance.now();
        }
      }),
    );
    if (!results.some((written) => written)) {
      throw new NodeError(
        "AUDIT_UNAVAILABLE",
        "no audit sink could record the request, so it was not served",
      );
    }
  }

  /** Whether every sink works and keeps up: none failing, none stalled. */
  private sinksKeepUp(): boolean {
    const now = performance.now();
    return this.sinks.every((sink) => !sink.failing && !this.isStalled(sink, now));
  }

  /** Whether `sink` has entries outstanding and took none for `stalledAfterMs`. */
  private isStalled(sink: Sink, now: number): boolean {
    return (
      sink.outstanding > 0 && now - sink.progressAt >= (this.options.stalledAfterMs ?? defaultStalledAfterMs)
    );
  }

  /** Sinks with entries outstanding that took none for `stalledAfterMs`, for health and metrics. */
  stalledSinks(): string[] {
    const now = performance.now();
    return this.sinks.filter((sink) => this.isStalled(sink, now)).map((sink) => sink.name);
  }

  /** Failing sinks, for health. */
  failingSinks(): string[] {
    return this.sinks.filter((sink) => sink.failing).map((sink) => sink.name);
  }

  /** Whether no sink took its last entry: every call is refused AUDIT_UNAVAILABLE until one does. */
  allSinksFailing(): boolean {
    return this.sinks.every((sink) => sink.failing);
  }

  /** Closes every sink once its entries in flight are on disk. */
  close(): Promise<void> {
    return this.end((file) => file.close());
  }

  /**
   * The node stops on a fatal error and its process ends next: every file sink waits for its
   * write in flight and is closed as a crash leaves it (AuditFile.abandon), so that a write a full
   * disk cut short is not left as a torn line.
   */
  abandon(): Promise<void> {
    // A call still arriving is refused, not recorded in a sink opened again.
    this.abandoned = true;
    return this.end((file) => file.abandon());
  }

  private async end(endFile: (file: AuditFile) => Promise<void>): Promise<void> {
    await Promise.all(
      this.sinks.map(async (sink) => {
        const opened = sink.opened;
        sink.opened = null;
        try {
          if (opened instanceof AuditFile) await endFile(opened);
          else opened?.close();
        } catch {
          // A sink that cannot be closed cleanly leaves a file without its final checkpoint; the
          // verifier reports it.
        }
      }),
    );
    this.forgetKeys();
  }

  private baseRecord(
    context: RequestContext,
    request: unknown,
    requestId: string,
  ): Omit<AuditRecord, "type"> {
    const fields = (typeof request === "object" && request !== null ? request : {}) as Record<
      string,
      unknown
    >;
    const method = context.method;
    const shortName = method.slice(method.lastIndexOf("/") + 1);
    const auditKey = this.currentAuditKey();
    const hashed: Record<string, string> = {};
    const hash = (value: Uint8Array | string) =>
      auditKey === null ? "[redacted]" : hashSensitive(auditKey, value);
    for (const field of sensitiveFields) {
      const value = fields[field];
      if (value instanceof Uint8Array || (typeof value === "string" && value !== ""))
        hashed[field] = hash(value);
    }
    // The caller's token, as an auditor holding a token can recognize it: HMAC(audit key, token).
    if (context.token !== null)
      hashed.token = auditKey === null ? "[redacted]" : this.tokenHashes.of(auditKey, context.token);
    const target = auditedFields(fields, targetFields);
    return {
      requestId,
      identity: context.identity,
      method,
      ...(typeof fields.path === "string" ? { path: fields.path } : {}),
      ...(capabilities[shortName] === undefined || !method.includes(".Secrets/")
        ? {}
        : { capability: capabilities[shortName] }),
      ...(context.forwardedBy === null ? {} : { forwardedBy: context.forwardedBy }),
      ...(typeof fields.requestId === "string" && isWellFormedRequestId(fields.requestId)
        ? { clientRequestId: fields.requestId }
        : {}),
      ...(Object.keys(hashed).length === 0 ? {} : { hashed }),
      ...(target === null ? {} : { target }),
    };
  }

  /** The response entry's `result`, and the HMAC of a token the call issued, from its response. */
  private withResult(base: Omit<AuditRecord, "type">, response: unknown): Omit<AuditRecord, "type"> {
    if (typeof response !== "object" || response === null) return base;
    const fields = response as Record<string, unknown>;
    let result = auditedFields(fields, resultFields);
    // A token's accessor: in TokenInfo (RenewToken, LookupToken), or in its info (CreateToken).
    const info = fields.info;
    const accessor =
      typeof fields.accessor === "string"
        ? fields.accessor
        : typeof info === "object" && info !== null
          ? (info as Record<string, unknown>).accessor
          : undefined;
    if (typeof accessor === "string" && accessor !== "")
      result = { ...result, accessor: cutString(accessor) };
    const issued = issuedTokenFields
      .map((field) => fields[field])
      .find((value) => typeof value === "string" && value !== "");
    if (result === null && issued === undefined) return base;
    const added: { -readonly [field in "result" | "hashed"]?: AuditRecord[field] } = {};
    if (result !== null) added.result = result;
    if (typeof issued === "string") {
      const auditKey = this.currentAuditKey();
      added.hashed = {
        ...base.hashed,
        issuedToken: auditKey === null ? "[redacted]" : hashSensitive(auditKey, issued),
      };
    }
    return extended(base, added);
  }
}

/**
 * The fields of `names` that `fields` holds with a value worth recording (a non-empty string or
 * list, a number other than 0, true), strings and lists cut; null when there are none.
 */
function auditedFields(
  fields: Record<string, unknown>,
  names: readonly string[],
): Record<string, AuditedValue> | null {
  const recorded: Record<string, AuditedValue> = {};
  for (const name of names) {
    const value = fields[name];
    if (typeof value === "string" && value !== "") recorded[name] = cutString(value);
    else if (typeof value === "number" && value !== 0 && Number.isFinite(value)) recorded[name] = value;
    else if (typeof value === "boolean" && value) recorded[name] = value;
    else if (Array.isArray(value) && value.length > 0 && value.every((entry) => typeof entry === "string")) {
      const kept = value.slice(0, auditedListMax).map(cutString);
      recorded[name] =
        value.length > auditedListMax ? [...kept, `…and ${value.length - auditedListMax} more`] : kept;
    }
  }
  return Object.keys(recorded).length === 0 ? null : recorded;
}

function cutString(value: string): string {
  return value.length <= auditedStringMax
    ? value
    : `${value.slice(0, auditedStringMax)}…(${value.length} characters)`;
}

/**
 * A new record: `record`'s fields, then `fields` (a field of both keeps its place and takes the new
 * value), as `{ ...record, ...fields }` would be. Not written so: on Node 20 (V8 11.3) an object
 * literal that spreads an object and then adds fields to it cost 1-5 µs an entry, against 0.1-0.4
 * µs for Object.assign (Node 22 and 24 are fast either way; docs/performance.md, fifty-seventh
 * session).
 */
function extended<Base extends object, Added extends object>(record: Base, fields: Added): Base & Added {
  return Object.assign({}, record, fields);
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

function statusName(code: status): string {
  return (Object.entries(status).find(([, value]) => value === code)?.[0] ?? String(code)) as string;
}

/**
 * A call that did what it asked (here, or on the leader it was forwarded to) but whose response
 * entry no sink could take is not answered ("no audit, no answer"). Not AUDIT_UNAVAILABLE, which
 * says nothing was done and which a client sends again: the client must learn that its outcome is
 * unknown to it, and read before sending it again, or send it with a request id.
 */
function withheldAnswer(): never {
  throw new NodeError(
    "AUDIT_FAILED_AFTER_ACT",
    "the call was done, but no audit sink could record its response, so its answer is withheld (read before sending it again, or send it with a request id)",
  );
}
