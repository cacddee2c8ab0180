// strongroom.v1.Secrets: the handlers. Writes run on the leader (the executor forwards them):
// the value is encrypted by the barrier here, before it is proposed, so the Raft log, the state
// machine and every replica only ever see ciphertext. Reads run on the node that received them,
// after the read barrier, and decrypt in memory.

import {
  Consistency,
  type GetMetadataRequest,
  type GetRequest,
  type GetResponse,
  type HistoryResponse,
  type ListRequest,
  type ListResponse,
  type PutRequest,
  type PutResponse,
  type ReadTimesResponse,
  type SecretMetadata,
  SecretsService,
  type StaleRequest,
  type StaleResponse,
  type UpdateMetadataRequest,
  type VersionsRequest,
  type WriteResponse,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import type { RaftNode } from "../../raft/node/index.js";
import type { Barrier } from "../../storage/barrier/index.js";
import {
  type ApplyResult,
  encodeCommand,
  type SecretCommand,
  type SecretMetadataChanges,
  type SecretStateMachine,
  StateError,
  type StateLimits,
  type SecretMetadata as StoredMetadata,
  validatePath,
  validatePrefix,
  validateVersionList,
} from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { generatorFromWire, generatorToWire } from "../lifecycle/generator-wire.js";
import { mergeReadTimes, type ReadTimes, type ReadTracker } from "../lifecycle/read-tracker.js";
import type { Rotator } from "../lifecycle/rotator.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { RequestContext } from "../request.js";
import type { SealKeeper } from "../seal-keeper.js";
import { type AnyApiMethod, method, readMethod } from "./api-method.js";
import type { RequestFingerprints } from "./request-fingerprint.js";

export interface SecretsApiParts {
  /** Rotations (scheduled by the leader, and Rotate). */
  readonly rotator: Rotator;
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly state: SecretStateMachine;
  readonly barrier: Barrier;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
  readonly limits: StateLimits;
  /** The request ids of writes, with their digests (what makes a retried write apply once). */
  readonly fingerprints: RequestFingerprints;
  /**
   * Refuses unless the caller may have certificates issued under `role` (update on
   * sys/pki/issue/<role>): setting an x509 generator issues them in the caller's stead.
   */
  readonly requireIssuer: (context: RequestContext, role: string) => Promise<void>;
  /** This node's record of reads (for Stale's unread part, and ReadTimes). */
  readonly readTracker: ReadTracker;
  /** Every other member's reads under a prefix, and the members that did not answer. */
  readonly peerReadTimes: (
    prefix: string,
    context: RequestContext,
  ) => Promise<{ answers: ReadTimes[]; missing: string[] }>;
}

export function secretsMethods(parts: SecretsApiParts): Record<string, AnyApiMethod> {
  const api = new SecretsApi(parts);
  const service = SecretsService;
  // Every secrets call is refused at once by a sealed or uninitialized node, before any routing.
  const serving = () => requireServing(parts.keeper, null);
  return {
    put: method(service.put, "leader", (request, context) => api.put(request, context), serving),
    get: readMethod(service.get, (request, context) => api.get(request, context), serving),
    delete: method(
      service.delete,
      "leader",
      (request, context) => api.versions("kv.delete", request, context),
      serving,
    ),
    undelete: method(
      service.undelete,
      "leader",
      (request, context) => api.versions("kv.undelete", request, context),
      serving,
    ),
    destroy: method(
      service.destroy,
      "leader",
      (request, context) => api.versions("kv.destroy", request, context),
      serving,
    ),
    list: readMethod(service.list, (request, context) => api.list(request, context), serving),
    getMetadata: readMethod(
      service.getMetadata,
      (request, context) => api.getMetadata(request, context),
      serving,
    ),
    updateMetadata: method(
      service.updateMetadata,
      "leader",
      (request, context) => api.updateMetadata(request, context),
      serving,
    ),
    history: readMethod(service.history, (request, context) => api.history(request, context), serving),
    stale: readMethod(service.stale, (request, context) => api.stale(request, context), serving),
    readTimes: method(
      service.readTimes,
      "peer",
      async (request, context): Promise<ReadTimesResponse> => {
        requireServing(parts.keeper, context);
        if (request.prefix !== "") validatePrefix(request.prefix, parts.limits);
        const times = parts.readTracker.readTimes(request.prefix);
        return { lastReadMs: Object.fromEntries(times.lastRead), trackedSinceMs: times.since };
      },
      serving,
    ),
    rotate: method(
      service.rotate,
      "leader",
      async (request, context) => {
        requireServing(parts.keeper, context);
        validatePath(request.path, parts.limits);
        return await parts.rotator.rotateNow(request.path);
      },
      serving,
    ),
  };
}

class SecretsApi {
  constructor(private readonly parts: SecretsApiParts) {}

  async put(request: PutRequest, context: RequestContext): Promise<PutResponse> {
    requireServing(this.parts.keeper, context);
    validatePath(request.path, this.parts.limits);
    if (request.value.length > this.parts.limits.valueBytesMax) {
      throw new StateError(
        "VALUE_TOO_LARGE",
        `the value of ${request.path} is ${request.value.length} bytes; the limit is ${this.parts.limits.valueBytesMax}`,
      );
    }
    // Checked before anything is encrypted: a malformed id is refused as cheaply as a bad path.
    const commandRequest = this.parts.fingerprints.of(context.method, request);
    const ciphertext = this.parts.barrier.encrypt(request.path, request.value);
    const { revision, result } = await this.propose({
      op: "kv.put",
      path: request.path,
      ciphertext,
      cas: request.cas ?? null,
      at: Date.now(),
      ...commandRequest,
    });
    return { version: result.version ?? 0, revision };
  }

  async get(request: GetRequest, context: RequestContext): Promise<GetResponse> {
    requireServing(this.parts.keeper, context);
    validatePath(request.path, this.parts.limits);
    const revision = this.parts.state.revisionOf(
      await this.parts.reads.wait(request.consistency, request.maxStalenessMs, context),
    );
    const found = await this.parts.state.read(
      request.path,
      request.version === 0 ? null : request.version,
      Date.now(),
    );
    const value = this.parts.barrier.decrypt(request.path, found.ciphertext);
    // Noted as read here, while the audit's request entry may still be on its way (a read runs
    // beside it): a read the audit then refuses counts as an attempt, and the Stale report errs
    // towards "read", never towards "unread".
    this.parts.readTracker.noteRead(request.path);
    return {
      value,
      version: found.version,
      revision,
      createdMs: found.metadata.versions.get(found.version)?.created ?? 0,
    };
  }

  async versions(
    op: "kv.delete" | "kv.undelete" | "kv.destroy",
    request: VersionsRequest,
    context: RequestContext,
  ): Promise<WriteResponse> {
    requireServing(this.parts.keeper, context);
    validatePath(request.path, this.parts.limits);
    validateVersionList(request.versions, this.parts.limits);
    // A version not written yet is a mistake (a typo, the wrong secret), not a no-op to report as
    // done: a destroy that erased nothing must not say it did. Checked here, on the leader, and
    // not where the entry is applied, so that entries already in a log apply as they always did;
    // after a read barrier, so that a leader new in its term has applied every acknowledged write.
    // (A delete of the newest version names none: it pays no barrier, a quorum round trip.)
    if (request.versions.length > 0) {
      await this.parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
      const current = (await this.parts.state.metadata(request.path))?.current ?? 0;
      const ahead = current === 0 ? [] : request.versions.filter((version) => version > current);
      if (ahead.length > 0)
        throw new StateError(
          "INVALID_ARGUMENT",
          `${request.path} has no version ${ahead.join(", ")}: its newest is ${current}`,
        );
    }
    const { revision } = await this.propose({
      op,
      path: request.path,
      versions: request.versions,
      at: Date.now(),
      ...this.parts.fingerprints.of(context.method, request),
    });
    return { revision };
  }

  async list(request: ListRequest, context: RequestContext): Promise<ListResponse> {
    requireServing(this.parts.keeper, context);
    const limit = request.limit === 0 ? 100 : request.limit;
    if (limit > this.parts.limits.listPageMax) {
      throw new StateError(
        "INVALID_ARGUMENT",
        `limit ${limit} is above the largest page, ${this.parts.limits.listPageMax}`,
      );
    }
    await this.parts.reads.wait(request.consistency, 0, context);
    const page = await this.parts.state.list(
      request.prefix,
      request.after === "" ? null : request.after,
      limit,
    );
    return { paths: page.paths, next: page.next ?? "" };
  }

  async stale(request: StaleRequest, context: RequestContext): Promise<StaleResponse> {
    requireServing(this.parts.keeper, context);
    const limit = request.limit === 0 ? 1000 : request.limit;
    if (limit > 1000) throw new StateError("INVALID_ARGUMENT", `limit ${limit} is above the largest, 1000`);
    await this.parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
    const now = Date.now();
    let unread: { before: number; lastRead: ReadonlyMap<string, number> } | undefined;
    let tracking: { since: number; missing: string[] } = { since: 0, missing: [] };
    if (request.unreadForMs > 0) {
      const peers = await this.parts.peerReadTimes(request.prefix, context);
      const merged = mergeReadTimes([this.parts.readTracker.readTimes(request.prefix), ...peers.answers]);
      const before = now - request.unreadForMs;
      tracking = { since: merged.since, missing: peers.missing };
      // Reads before a member began recording are unknown: claim nothing unread until it has
      // recorded for the whole window.
      if (merged.since <= before) unread = { before, lastRead: merged.lastRead };
    }
    const report = await this.parts.state.staleSecrets(
      request.prefix,
      now,
      request.expiringWithinMs,
      limit,
      unread,
    );
    return {
      readsTrackedSinceMs: tracking.since,
      membersNotAnswering: tracking.missing,
      secrets: report.secrets.map((secret) => ({
        path: secret.path,
        reason: secret.reason,
        atMs: secret.at,
        owner: secret.owner,
      })),
      truncated: report.truncated,
    };
  }

  async getMetadata(request: GetMetadataRequest, context: RequestContext): Promise<SecretMetadata> {
    return toWireMetadata(request.path, await this.metadataOf(request, context));
  }

  async history(request: GetMetadataRequest, context: RequestContext): Promise<HistoryResponse> {
    const metadata = await this.metadataOf(request, context);
    return {
      // Oldest first, as the state machine keeps them.
      versions: [...metadata.versions].map(([version, record]) => ({
        version,
        createdMs: record.created,
        deletedMs: record.deleted ?? 0,
        destroyed: record.destroyed,
      })),
    };
  }

  async updateMetadata(request: UpdateMetadataRequest, context: RequestContext): Promise<WriteResponse> {
    requireServing(this.parts.keeper, context);
    validatePath(request.path, this.parts.limits);
    // An expiry erases the secret's values within a sweep: one already past (a mistyped year)
    // would erase them at once, for good. Checked here, by this node's clock; apply has none.
    if (request.expiresAtMs !== undefined && request.expiresAtMs > 0 && request.expiresAtMs <= Date.now()) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `expires_at ${new Date(request.expiresAtMs).toISOString()} has passed: an expiry erases the values, so it must be in the future (to erase them now: destroy the versions)`,
      );
    }
    // A map field cannot be told absent from empty, so replace_custom says when `custom` counts:
    // custom metadata sent without it was ignored and the call answered as if it had been written.
    if (!request.replaceCustom && Object.keys(request.custom).length > 0)
      throw new NodeError(
        "INVALID_ARGUMENT",
        "custom is given without replace_custom: set replace_custom to replace the secret's custom metadata with it (with an empty custom, it clears them)",
      );
    const changes: SecretMetadataChanges = {
      ...(request.maxVersions === undefined ? {} : { maxVersions: request.maxVersions }),
      ...(request.casRequired === undefined ? {} : { casRequired: request.casRequired }),
      ...(request.deleteVersionAfterMs === undefined
        ? {}
        : { deleteVersionAfterMs: request.deleteVersionAfterMs }),
      ...(request.owner === undefined ? {} : { owner: request.owner }),
      ...(request.rotationPeriodMs === undefined ? {} : { rotationPeriodMs: request.rotationPeriodMs }),
      ...(request.replaceCustom ? { custom: request.custom } : {}),
      ...(request.rotationOverlapMs === undefined ? {} : { rotationOverlapMs: request.rotationOverlapMs }),
      ...(request.expiresAtMs === undefined ? {} : { expiresAt: request.expiresAtMs }),
      ...generatorChange(request),
    };
    if (changes.generator?.kind === "x509")
      await this.parts.requireIssuer(context, String(changes.generator.role));
    const { revision } = await this.propose({
      op: "kv.metadata",
      path: request.path,
      changes,
      at: Date.now(),
      ...this.parts.fingerprints.of(context.method, request),
    });
    return { revision };
  }

  private async metadataOf(request: GetMetadataRequest, context: RequestContext): Promise<StoredMetadata> {
    requireServing(this.parts.keeper, context);
    validatePath(request.path, this.parts.limits);
    await this.parts.reads.wait(request.consistency, 0, context);
    const metadata = await this.parts.state.metadata(request.path);
    if (metadata === null) throw new StateError("NOT_FOUND", `no secret at ${request.path}`);
    return metadata;
  }

  /**
   * Proposes a command and waits until it is applied here, answering the revision of its change
   * (for a retried request, of the first one's); a refused apply becomes its StateError.
   */
  private async propose(
    command: SecretCommand,
  ): Promise<{ revision: number; result: { version: number | null } }> {
    const { index, result } = await this.parts.raft().propose(encodeCommand(command));
    if (result === null) throw new NodeError("INTERNAL", "the command applied without a result");
    if (!result.ok) throw new StateError(result.code, result.message);
    return { revision: this.parts.state.revisionOf(result.replayOf ?? index), result };
  }
}

/** Refuses work on an uninitialized or sealed node; a sealed leader asks the follower to try again. */
export function requireServing(keeper: SealKeeper, context: RequestContext | null): void {
  if (!keeper.initialized())
    throw new NodeError("NOT_INITIALIZED", "the cluster is not initialized: run init");
  if (!keeper.sealed()) return;
  if (context?.forwardedBy) {
    throw new NodeError("LEADER_SEALED", "the leader is sealed; leadership is moving to an unsealed node");
  }
  throw new NodeError("SEALED", "this node is sealed: unseal it to serve secrets");
}

function toWireMetadata(path: string, metadata: StoredMetadata): SecretMetadata {
  return {
    path,
    createdMs: metadata.created,
    updatedMs: metadata.updated,
    currentVersion: metadata.current,
    maxVersions: metadata.maxVersions,
    casRequired: metadata.casRequired,
    deleteVersionAfterMs: metadata.deleteVersionAfterMs,
    owner: metadata.owner,
    rotationPeriodMs: metadata.rotationPeriodMs,
    custom: { ...metadata.custom },
    generator: generatorToWire(metadata.generator),
    rotationOverlapMs: metadata.rotationOverlapMs,
    lastRotatedMs: metadata.lastRotated,
    nextRotationMs: metadata.nextRotationAt,
    rotationFailures: metadata.rotationFailures,
    lastRotationError: metadata.lastRotationError,
    expiresAtMs: metadata.expiresAt,
  };
}

/** UpdateMetadata's generator: set (validated), cleared, or left as it is. */
function generatorChange(request: UpdateMetadataRequest): Pick<SecretMetadataChanges, "generator"> {
  if (request.clearGenerator) {
    if (request.generator !== undefined)
      throw new NodeError("INVALID_ARGUMENT", "give a generator or clear_generator, not both");
    return { generator: null };
  }
  return request.generator === undefined ? {} : { generator: generatorFromWire(request.generator) };
}
