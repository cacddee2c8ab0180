// strongroom.v1.Sys: init, unseal, seal, status, rekey, seal migration and keyring rotation, on
// top of the seal library (hsm/) and the seal keeper. What changes how the root key or the data
// keys are protected is proposed as the well-known system records (seal record, wrapped keyring),
// so every node applies the same change; each node's seal keeper reloads them on apply. Shares are
// collected on the leader (rekey, migration) or on the node being unsealed (unseal), one per call.

import {
  authorizingShareSet,
  checkAuthorization,
  checkShareOptions,
  encodeSealRecord,
  initializeSeal,
  migrateSeal,
  Pkcs11Client,
  pkcs11ProtectorOf,
  rekeyShares,
  rewrapWithHsmKey,
  type SealInitOptions,
  type SealRecord,
  type ShareOptions as SealShareOptions,
  ShareCollector,
  validatePkcs11Config,
} from "../../hsm/index.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import {
  type GenerateRootRequest,
  type GenerateRootResponse,
  type InitRequest,
  type InitResponse,
  type MigrateSealRequest,
  type MigrateSealResponse,
  type RekeyRequest,
  type RekeyResponse,
  type RotateHsmKeyRequest,
  type RotateKeyringResponse,
  type SealStatusResponse,
  type ShareOptions,
  SysService,
} from "../../proto/gen/strongroom/v1/sys.gen.js";
import type { RaftNode } from "../../raft/node/index.js";
import { Barrier, Keyring, unwrapKeyring, wrapKeyring } from "../../storage/barrier/index.js";
import {
  type ApplyResult,
  encodeCommand,
  recordDigest,
  type SecretStateMachine,
  StateError,
  type SystemArea,
  type SystemRecordPut,
  systemRecordName,
  wellKnownRecords,
} from "../../storage/state/index.js";
import { accessAreas, encodeRecord, rootTokenRecord } from "../access/access-records.js";
import { deriveTokenKey, newAccessor, newToken, tokenHash } from "../access/token-ids.js";
import { hashSensitive } from "../audit/audit-chain.js";
import { deriveAuditKey } from "../audit/audit-trail.js";
import type { ClusterSetupLock } from "../cluster-setup-lock.js";
import { NodeError } from "../errors.js";
import { type CannotLead, handOverLeadership } from "../leadership.js";
import type { ReadBarrier } from "../read-barrier.js";
import { msLeft, type RequestContext } from "../request.js";
import type { SealKeeper } from "../seal-keeper.js";
import { barrierContext } from "../system-records.js";
import { type AnyApiMethod, method } from "./api-method.js";
import { requireServing } from "./secrets-api.js";

/** Tries of a keyring rotation that other rotations keep committing ahead of. */
const keyringRotationAttempts = 5;

/** Init's refusal while a restore's first entry (its keyring) stands and its seal record does not. */
const unfinishedRestore =
  "a snapshot restore into this cluster began and did not finish (its keyring is written, its seal record is not): run the restore again, or start the cluster afresh (empty data directories) to init it instead";

export interface SysApiParts {
  readonly nodeId: string;
  readonly raft: () => RaftNode<ApplyResult | null>;
  /** Whether a member cannot take the leadership now (sealed, out of reach). */
  readonly cannotLead: CannotLead;
  /** raft.electionTicks × raft.tickMs: how long a seal's hand-over waits on a failed election. */
  readonly electionTimeoutMs: number;
  readonly state: SecretStateMachine;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
  readonly shareAttemptTimeoutMs: number;
  /** Proposes a new root token record and returns the token (access-api.ts). */
  readonly issueRootToken: (createdBy: string) => Promise<string>;
  /** Whether this leader may propose `sys.putAll` (every member understands it). */
  readonly systemPutAllUsable: () => boolean;
  /** Shared with the snapshot restore: one of them at a time on this node. */
  readonly setupLock: ClusterSetupLock;
}

export function sysMethods(parts: SysApiParts): Record<string, AnyApiMethod> {
  const api = new SysApi(parts);
  const service = SysService;
  return {
    init: method(service.init, "leader", (request, context) => api.init(request, context)),
    unseal: method(service.unseal, "local", async (request, context) => {
      // Right after Init, this node may not have applied the seal record yet: catch up first
      // (a linearizable read barrier, which waits out an election within the deadline), so
      // "init, then unseal every node" works at once.
      if (!parts.keeper.initialized()) {
        await parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
        await parts.keeper.reload();
      }
      if (request.reset) parts.keeper.resetShareAttempt();
      else await parts.keeper.unsealWithShare(request.share, request.nonce);
      return api.status();
    }),
    seal: method(service.seal, "local", async (_request, context) => {
      // A leader hands over first, so the cluster keeps a leader that can serve.
      await handOverLeadership(parts.raft(), parts.cannotLead, {
        waitMs: Math.min(2000, msLeft(context.answerBy)),
        electionTimeoutMs: parts.electionTimeoutMs,
      });
      parts.keeper.seal();
      return api.status();
    }),
    sealStatus: method(service.sealStatus, "local", async () => api.status()),
    rekey: method(service.rekey, "leader", (request) => api.rekey(request)),
    migrateSeal: method(service.migrateSeal, "leader", (request) => api.migrate(request)),
    rotateKeyring: method(service.rotateKeyring, "leader", () => api.rotateKeyring()),
    rotateHsmKey: method(service.rotateHsmKey, "leader", async (request) => {
      await api.rotateHsmKey(request);
      return api.status();
    }),
    generateRoot: method(service.generateRoot, "leader", (request, context) =>
      api.generateRoot(request, context),
    ),
    auditKey: method(service.auditKey, "local", async () => {
      requireServing(parts.keeper, null);
      return { key: deriveAuditKey(parts.keeper.rootKey()) };
    }),
    auditHash: method(service.auditHash, "local", async (request) => {
      requireServing(parts.keeper, null);
      const key = deriveAuditKey(parts.keeper.rootKey());
      try {
        return { hash: hashSensitive(key, request.input) };
      } finally {
        key.fill(0);
      }
    }),
  };
}

class SysApi {
  private readonly rekeyCollector: ShareCollector;
  private rekeyTarget: SealShareOptions | null = null;
  private readonly migrationCollector: ShareCollector;
  private readonly generateRootCollector: ShareCollector;
  private migrationTarget: RequestedMigration | null = null;

  constructor(private readonly parts: SysApiParts) {
    this.rekeyCollector = new ShareCollector({ attemptTimeoutMs: parts.shareAttemptTimeoutMs });
    this.migrationCollector = new ShareCollector({ attemptTimeoutMs: parts.shareAttemptTimeoutMs });
    this.generateRootCollector = new ShareCollector({ attemptTimeoutMs: parts.shareAttemptTimeoutMs });
  }

  status(): SealStatusResponse {
    const { initialized, sealed, seals, hsmState, hsmLastError } = this.parts.keeper.status();
    // The shares an unseal takes: the unseal shares, or with an HSM alone the recovery shares.
    const attempt = seals?.shamir ?? seals?.recovery;
    const hsmProtector = initialized ? pkcs11ProtectorOf(this.parts.keeper.currentRecord()) : undefined;
    return {
      nodeId: this.parts.nodeId,
      initialized,
      sealed,
      sealTypes: [...(seals?.types ?? [])],
      threshold: attempt?.threshold ?? 0,
      shares: attempt?.shares ?? 0,
      progress: attempt?.progress ?? 0,
      nonce: attempt?.nonce ?? "",
      unsealedBy: seals?.unsealedBy ?? "",
      hsmState,
      hsmLastError,
      recoveryThreshold: seals?.recovery?.threshold ?? 0,
      recoveryShares: seals?.recovery?.shares ?? 0,
      hsmKeyLabel: hsmProtector?.keyLabel ?? "",
      hsmMechanism: hsmProtector?.mechanism ?? "",
    };
  }

  init(request: InitRequest, context: RequestContext): Promise<InitResponse> {
    return this.parts.setupLock.run("an init", () => this.initAlone(request, context));
  }

  private async initAlone(request: InitRequest, context: RequestContext): Promise<InitResponse> {
    // A linearizable look at the state: no seal record may exist, on any node, and no restore may
    // have begun (it writes its keyring first and its seal record last).
    await this.parts.raft().readIndex();
    if (this.parts.keeper.initialized())
      throw new NodeError("ALREADY_INITIALIZED", "the cluster is already initialized");
    const { restoring } = wellKnownRecords;
    if ((await this.parts.state.systemRecord(restoring.area, restoring.name)) !== null)
      throw new NodeError("ALREADY_INITIALIZED", unfinishedRestore);
    const options: SealInitOptions = {
      ...(hasShares(request.shamir) ? { shamir: shareOptions(request.shamir) } : {}),
      ...(request.hsm
        ? { pkcs11: { client: this.parts.keeper.hsmClient(), generateKey: request.generateHsmKey } }
        : {}),
      ...(hasShares(request.recovery) ? { recovery: shareOptions(request.recovery) } : {}),
    };
    const result = await initializeSeal(options);
    const keyring = Keyring.create(Date.now());
    const rootToken = newToken();
    let wrappedKeyring: Uint8Array;
    let rootTokenName: string;
    let sealedRootToken: Uint8Array;
    try {
      wrappedKeyring = wrapKeyring(keyring, result.rootKey);
      // The root token's record, encrypted with the new keyring like every access record.
      const tokenKey = deriveTokenKey(result.rootKey);
      rootTokenName = tokenHash(tokenKey, rootToken);
      tokenKey.fill(0);
      const barrier = new Barrier();
      barrier.unseal(keyring);
      sealedRootToken = barrier.encrypt(
        barrierContext(accessAreas.token, rootTokenName),
        encodeRecord(rootTokenRecord(context.identity, newAccessor(), Date.now())),
      );
    } finally {
      keyring.zero();
      result.rootKey.fill(0);
    }
    await this.putInitRecords([
      { ...systemRecordName(wellKnownRecords.keyring), value: wrappedKeyring },
      { area: accessAreas.token, path: rootTokenName, value: sealedRootToken },
      { ...systemRecordName(wellKnownRecords.seal), value: encodeSealRecord(result.record) },
    ]);
    await this.parts.keeper.reload();
    return {
      unsealShares: [...(result.unsealShares?.shares ?? [])],
      unsealThreshold: result.unsealShares?.threshold ?? 0,
      recoveryShares: [...(result.recoveryShares?.shares ?? [])],
      recoveryThreshold: result.recoveryShares?.threshold ?? 0,
      sharesEncrypted: result.unsealShares?.encrypted ?? result.recoveryShares?.encrypted ?? false,
      rootToken,
    };
  }

  async rekey(request: RekeyRequest): Promise<RekeyResponse> {
    const { record, digest } = this.parts.keeper.currentRecordWithDigest();
    const set = authorizingShareSet(record);
    if (request.reset) {
      this.rekeyCollector.reset();
      this.rekeyTarget = null;
      return { complete: false, ...this.rekeyCollector.progress(set), shares: [], sharesEncrypted: false };
    }
    if (this.rekeyCollector.progress(set).progress === 0) {
      if (!hasShares(request.newShares)) {
        throw new NodeError(
          "INVALID_ARGUMENT",
          "the first share of a rekey comes with the new share count and threshold",
        );
      }
      // Checked before the share is taken: operators learn of a bad count or key now, not after
      // a threshold of them have each given theirs.
      const target = shareOptions(request.newShares);
      checkShareOptions(target);
      this.rekeyTarget = target;
    }
    const target = this.rekeyTarget;
    if (target === null) throw new NodeError("INVALID_ARGUMENT", "no rekey is in progress");
    // A share given for other new options than the attempt's would make shares its operator did
    // not ask for: refused before it is taken.
    if (hasShares(request.newShares) && !sameShareOptions(shareOptions(request.newShares), target)) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a rekey to ${describeShareOptions(target)} is in progress: give your share with the same options, or reset it (operator rekey --reset)`,
      );
    }
    const submission = await this.rekeyCollector.submit(set, request.share, request.nonce);
    if (!submission.complete)
      return { complete: false, ...this.rekeyCollector.progress(set), shares: [], sharesEncrypted: false };
    try {
      const rekeyed = await rekeyShares(record, submission.secret, target);
      await this.putSealRecord(rekeyed.record, digest);
      return {
        complete: true,
        progress: 0,
        threshold: rekeyed.shares.threshold,
        nonce: submission.nonce,
        shares: [...rekeyed.shares.shares],
        sharesEncrypted: rekeyed.shares.encrypted,
      };
    } finally {
      submission.secret.fill(0);
      this.rekeyTarget = null;
    }
  }

  async migrate(request: MigrateSealRequest): Promise<MigrateSealResponse> {
    const { record, digest } = this.parts.keeper.currentRecordWithDigest();
    const set = authorizingShareSet(record);
    const progress = () => ({
      complete: false,
      ...this.migrationCollector.progress(set),
      sealTypes: typesOf(record),
    });
    if (request.reset) {
      this.migrationCollector.reset();
      this.migrationTarget = null;
      return progress();
    }
    if (this.migrationCollector.progress(set).progress === 0) {
      if (!request.shamir && !request.hsm) {
        throw new NodeError(
          "INVALID_ARGUMENT",
          "the first share of a migration names the target: shamir, hsm or both",
        );
      }
      this.migrationTarget = {
        shamir: request.shamir,
        hsm: request.hsm,
        generateHsmKey: request.generateHsmKey,
      };
    }
    const target = this.migrationTarget;
    if (target === null) throw new NodeError("INVALID_ARGUMENT", "no migration is in progress");
    if (
      (request.shamir || request.hsm) &&
      (request.shamir !== target.shamir ||
        request.hsm !== target.hsm ||
        request.generateHsmKey !== target.generateHsmKey)
    ) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a migration to ${describeMigration(target)} is in progress: give your share with the same target, or reset it (operator migrate-seal --reset)`,
      );
    }
    const submission = await this.migrationCollector.submit(set, request.share, request.nonce);
    if (!submission.complete) return progress();
    const rootKey = this.parts.keeper.rootKeyCopy();
    try {
      const next = await migrateSeal(record, rootKey, submission.secret, {
        shamir: target.shamir,
        ...(target.hsm
          ? { pkcs11: { client: this.parts.keeper.hsmClient(), generateKey: target.generateHsmKey } }
          : {}),
      });
      await this.putSealRecord(next, digest);
      return { complete: true, progress: 0, threshold: 0, nonce: submission.nonce, sealTypes: typesOf(next) };
    } finally {
      rootKey.fill(0);
      submission.secret.fill(0);
      this.migrationTarget = null;
    }
  }

  /**
   * A new root token, once a threshold of the authorizing shares has been given (one per call, on
   * the leader). The shares are checked against the seal record's digests; they unlock nothing
   * here - they only prove that enough share holders agree.
   */
  async generateRoot(request: GenerateRootRequest, context: RequestContext): Promise<GenerateRootResponse> {
    const record = this.parts.keeper.currentRecord();
    const set = authorizingShareSet(record);
    const progress = () => ({ complete: false, ...this.generateRootCollector.progress(set), rootToken: "" });
    if (request.reset) {
      this.generateRootCollector.reset();
      return progress();
    }
    const submission = await this.generateRootCollector.submit(set, request.share, request.nonce);
    if (!submission.complete) return progress();
    try {
      checkAuthorization(record, submission.secret);
    } finally {
      submission.secret.fill(0);
    }
    const rootToken = await this.parts.issueRootToken(context.identity);
    return { complete: true, progress: 0, threshold: 0, nonce: submission.nonce, rootToken };
  }

  /**
   * A new data key. The leader does not switch its own barrier first: it proposes the rotated
   * keyring, and every node (itself included) opens it when the entry applies, so no value is
   * ever written under a key term a replica cannot know yet. The keyring is proposed as a
   * check-and-set on the one it was made from: two rotations at once would otherwise both make
   * the next term, each with its own key, and the second would take away the key of every value
   * written under the first's. The one that loses starts again from the winner's keyring. It
   * answers once this node's barrier has the new key: the leader's next writes use it.
   */
  async rotateKeyring(): Promise<RotateKeyringResponse> {
    if (this.parts.keeper.sealed()) throw new NodeError("SEALED", "the leader is sealed");
    const { keyring: record } = wellKnownRecords;
    for (let attempt = 1; ; attempt++) {
      const wrapped = await this.parts.state.systemRecord(record.area, record.name);
      if (wrapped === null)
        throw new NodeError("NOT_INITIALIZED", "the keyring is missing from the replicated state");
      const keyring = unwrapKeyring(wrapped, this.parts.keeper.rootKey());
      try {
        const term = keyring.rotate(Date.now());
        const rotated = wrapKeyring(keyring, this.parts.keeper.rootKey());
        const revision = await this.putSystemRecord(record, rotated, recordDigest(wrapped));
        await this.parts.keeper.reload();
        return { term, revision };
      } catch (error) {
        if (
          !(error instanceof StateError && error.code === "CAS_MISMATCH") ||
          attempt >= keyringRotationAttempts
        )
          throw error;
      } finally {
        keyring.zero();
      }
    }
  }

  /** Wraps the root key under another key of the same token; every node unwraps with it from then on. */
  async rotateHsmKey(request: RotateHsmKeyRequest): Promise<void> {
    if (this.parts.keeper.sealed()) throw new NodeError("SEALED", "the leader is sealed");
    const current = this.parts.keeper.hsmClient().config;
    const { record, digest } = this.parts.keeper.currentRecordWithDigest();
    // "The current mechanism" is the one the seal record's protector uses (an earlier rotation may
    // have changed it), not necessarily the node's config's.
    const recorded = pkcs11ProtectorOf(record);
    const mechanism =
      request.mechanism !== "" ? request.mechanism : (recorded?.mechanism ?? current.mechanism);
    const client = new Pkcs11Client(
      validatePkcs11Config({ ...current, keyLabel: request.keyLabel, mechanism }),
    );
    // A copy: a rekey committing during the HSM calls zeroes the keeper's buffer.
    const rootKey = this.parts.keeper.rootKeyCopy();
    try {
      const next = await rewrapWithHsmKey(record, rootKey, { client, generateKey: request.generateKey });
      await this.putSealRecord(next, digest);
    } finally {
      rootKey.fill(0);
      client.close();
    }
  }

  /**
   * Writes init's records: the keyring and the root token before the seal record, since a cluster
   * counts as initialized once the seal record is applied and they must be there by then. In one
   * entry, applied only while no seal record exists and no restore has begun, once every member
   * understands it: of two inits at once (sent to two leaders across a leadership change, past
   * the readIndex check above), one writes all three and the other nothing. As separate puts, the
   * second init's keyring could land before the first's seal record, whose root key does not
   * unwrap it: a cluster no share unseals. Until then (a member not heard from yet) they go as
   * separate puts; a keyring left by such an init that stopped half-way is written over by the
   * next.
   */
  private async putInitRecords(records: readonly SystemRecordPut[]): Promise<void> {
    if (!this.parts.systemPutAllUsable()) {
      for (const { area, path, value } of records) await this.putSystemRecord({ area, name: path }, value);
      return;
    }
    const { result } = await this.parts.raft().propose(
      encodeCommand({
        op: "sys.putAll",
        path: "",
        records,
        ifAbsent: [systemRecordName(wellKnownRecords.seal), systemRecordName(wellKnownRecords.restoring)],
        at: Date.now(),
      }),
    );
    if (result === null || result.ok) return;
    if (result.code === "CAS_MISMATCH")
      throw new NodeError(
        "ALREADY_INITIALIZED",
        "the cluster was initialized by another init or a snapshot restore that committed first: this one wrote nothing, and its shares and root token are void",
      );
    throw new StateError(result.code, result.message);
  }

  /**
   * Proposes a seal record made from the one whose digest is `readDigest`. When another change to
   * it committed first, nothing is written and the caller starts again from the new record:
   * writing over it would undo that change (the shares a rekey handed out, an HSM key rotation).
   */
  private async putSealRecord(record: SealRecord, readDigest: Uint8Array): Promise<void> {
    try {
      await this.putSystemRecord(wellKnownRecords.seal, encodeSealRecord(record), readDigest);
    } catch (error) {
      if (!(error instanceof StateError && error.code === "CAS_MISMATCH")) throw error;
      throw new StateError(
        "CAS_MISMATCH",
        "the seal record changed while this ran (another rekey, seal migration or HSM key rotation committed first): nothing was changed; start again",
      );
    }
    await this.parts.keeper.reload();
  }

  /** Proposes a system record; with `ifDigest`, only if the record now stored has that SHA-256. */
  private async putSystemRecord(
    record: { readonly area: SystemArea; readonly name: string },
    value: Uint8Array,
    ifDigest?: Uint8Array,
  ): Promise<number> {
    const { index, result } = await this.parts.raft().propose(
      encodeCommand({
        op: "sys.put",
        area: record.area,
        path: record.name,
        value,
        at: Date.now(),
        ...(ifDigest === undefined ? {} : { ifDigest }),
      }),
    );
    if (result !== null && !result.ok) throw new StateError(result.code, result.message);
    return this.parts.state.revisionOf(index);
  }
}

function hasShares(options: ShareOptions | undefined): options is ShareOptions {
  return options !== undefined && options.count > 0;
}

function shareOptions(options: ShareOptions): SealShareOptions {
  return {
    count: options.count,
    threshold: options.threshold,
    ...(options.operatorKeys.length > 0 ? { operatorKeys: options.operatorKeys } : {}),
  };
}

function sameShareOptions(a: SealShareOptions, b: SealShareOptions): boolean {
  const keys = (options: SealShareOptions) => options.operatorKeys ?? [];
  return (
    a.count === b.count &&
    a.threshold === b.threshold &&
    keys(a).length === keys(b).length &&
    keys(a).every((key, i) => key === keys(b)[i])
  );
}

function describeShareOptions(options: SealShareOptions): string {
  const keys = options.operatorKeys?.length ?? 0;
  return `${options.count} shares, threshold ${options.threshold}${keys > 0 ? `, encrypted to ${keys} operator keys` : ""}`;
}

/** What a seal migration moves to, as the first share of its attempt named it. */
type RequestedMigration = Pick<MigrateSealRequest, "shamir" | "hsm" | "generateHsmKey">;

function describeMigration(target: RequestedMigration): string {
  const seals = [...(target.shamir ? ["shamir"] : []), ...(target.hsm ? ["hsm"] : [])].join(" + ");
  return target.generateHsmKey ? `${seals} (generating the HSM key)` : seals;
}

function typesOf(record: SealRecord): string[] {
  return record.protectors.map((protector) => protector.type);
}
