// One strongroom node: the parts composed, nothing more. The Raft log and the secret state on
// LevelDB, the Raft driver over the mutual-TLS peer transport, the barrier and the seal keeper,
// the API methods behind one executor (routing, forwarding, interceptors), the client and peer
// ports, and the plaintext health and metrics port. Each part lives in its own file; this one
// only wires them and owns start-up and shutdown order.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { registerSealMetrics, validatePkcs11Config } from "../hsm/index.js";
import { AccessService, type TokenInfo } from "../proto/gen/strongroom/v1/access.gen.js";
import {
  Consistency,
  type ReadTimesRequest,
  type ReadTimesResponse,
} from "../proto/gen/strongroom/v1/secrets.gen.js";
import { describeMessage, type Message } from "../raft/core/index.js";
import { RaftNode, readLeaseMsFor, type Transport } from "../raft/node/index.js";
import { Barrier } from "../storage/barrier/index.js";
import { openNodeLog } from "../storage/raft-log/open-node-log.js";
import type { SegmentLogStore } from "../storage/raft-log/segment-log-store.js";
import { type ApplyResult, defaultStateLimits, SecretStateMachine } from "../storage/state/index.js";
import { AccessView } from "./access/access-view.js";
import { Authorizer } from "./access/authorizer.js";
import { RateLimiter } from "./access/rate-limiter.js";
import { RefusalMetrics } from "./access/refusal-metrics.js";
import { TokenBackoff } from "./access/token-backoff.js";
import { AccessApi, accessMethods } from "./api/access-api.js";
import type { AnyApiMethod } from "./api/api-method.js";
import { ClusterApi, clusterMethods } from "./api/cluster-api.js";
import { leasesMethods } from "./api/leases-api.js";
import { pkiMethods } from "./api/pki-api.js";
import { RequestFingerprints } from "./api/request-fingerprint.js";
import { revocationMethods } from "./api/revocation-api.js";
import { requireServing, secretsMethods } from "./api/secrets-api.js";
import { restoreSnapshotHandler, saveSnapshotHandler } from "./api/snapshot-handlers.js";
import { sysMethods } from "./api/sys-api.js";
import { watchHandler } from "./api/watch-handler.js";
import { AuditTrail } from "./audit/audit-trail.js";
import { type ClientListener, startClientListener } from "./client-listener.js";
import { ClusterSetupLock } from "./cluster-setup-lock.js";
import type { NodeConfig } from "./config.js";
import { NodeError } from "./errors.js";
import { Executor } from "./executor.js";
import { failpointsFromEnv, failpointsReadMessage } from "./failpoints.js";
import { ForwardReceiver } from "./forward-receiver.js";
import { Forwarder } from "./forwarder.js";
import { GrpcMetrics } from "./grpc-metrics.js";
import { StandardServices } from "./grpc-standard-services.js";
import { type HttpEndpoints, startHttpEndpoints } from "./http-endpoints.js";
import { LeaderPlacement } from "./leader-placement.js";
import {
  type CannotLead,
  handOverLeadership,
  leadershipCandidates,
  leaderTaskFailure,
} from "./leadership.js";
import { IdentityRevocation } from "./leases/identity-revocation.js";
import { LeaseManager } from "./leases/lease-manager.js";
import { ExpirySweeper } from "./lifecycle/expiry-sweeper.js";
import { PeriodicTask } from "./lifecycle/periodic-task.js";
import { type ReadTimes, ReadTracker } from "./lifecycle/read-tracker.js";
import { Rotator } from "./lifecycle/rotator.js";
import { listening } from "./listen-error.js";
import { createLogger, type Logger } from "./logger.js";
import { MemberDirectory } from "./member-directory.js";
import { registerMemberMetrics } from "./member-metrics.js";
import { ObservedStateMachine } from "./observed-state-machine.js";
import { ClusterFeatures } from "./peer/cluster-features.js";
import { explainPeerFailure } from "./peer/peer-diagnosis.js";
import { memberFeatureGate, peerFeatures } from "./peer/peer-features.js";
import { type PeerListener, startPeerListener } from "./peer/peer-listener.js";
import { GrpcPeerTransport } from "./peer/peer-transport.js";
import { cutOffError, PeerContact } from "./peer-contact.js";
import { PkiEngine } from "./pki/pki-engine.js";
import { RaftMetrics } from "./raft-metrics.js";
import { ReadBarrier } from "./read-barrier.js";
import type { Interceptor } from "./request.js";
import { SealKeeper } from "./seal-keeper.js";
import { SystemRecords } from "./system-records.js";
import { activeTestFaults } from "./test-faults.js";
import { memoizePeerCertificates } from "./tls/peer-certificate-memo.js";
import { TlsFiles } from "./tls/tls-files.js";
import { strongroomVersion } from "./version.js";
import { WatchHub } from "./watch-hub.js";

/** How long a node stopping on a fatal error waits for its audit's write in flight and its last messages. */
const fatalWaitMs = 1000;

/**
 * How often a stop that has not ended says so (a graceful stop takes well under a second; its
 * bounded waits, the hand-over's 2 s and the calls' grace, add up to about 9 s).
 */
const stopSlowLogMs = 3000;

/** Secrets whose last read a node records, at most (beyond, the least recently read are forgotten). */
const readTrackerPathsMax = 1_000_000;

/** How often a leader looks for features every member understands that the cluster has not recorded. */
const featuresRecordEveryMs = 1000;

export interface NodeStartOptions {
  readonly logger?: Logger;
  /** Interceptors around every API handler, inside the node's own audit and authorization. */
  readonly interceptors?: readonly Interceptor[];
  /** Called once if the node stops on a fatal error (a broken Raft invariant, a failed disk write). */
  readonly onFatal?: (error: Error) => void;
  /**
   * Export the process's own metrics too (prom-client's defaults: RSS, heap by space, GC, event
   * loop delay, CPU, open files), as `strongroom server` does. Off for nodes that share a process
   * (tests): the figures would be the process's, not the node's.
   */
  readonly processMetrics?: boolean;
}

/**
 * How often the event loop's delay is sampled for `nodejs_eventloop_lag_*`: a timer of its own,
 * so 100 ms (10 wake-ups a second), not prom-client's default of 10 ms.
 */
const eventLoopSampleMs = 100;

export interface NodePorts {
  readonly client: number;
  readonly peer: number;
  readonly http: number | null;
}

export class StrongroomNode {
  private stopping = false;
  private handoffTimer: NodeJS.Timeout | null = null;
  private handoffCursor = 0;

  private constructor(
    readonly config: NodeConfig,
    readonly ports: NodePorts,
    private readonly parts: {
      readonly logger: Logger;
      readonly raft: RaftNode<ApplyResult | null>;
      readonly logStore: SegmentLogStore;
      readonly state: SecretStateMachine;
      readonly keeper: SealKeeper;
      readonly transport: GrpcPeerTransport;
      /** Whether a member cannot take the leadership now (leadership.ts). */
      readonly cannotLead: CannotLead;
      readonly forwarder: Forwarder;
      readonly clientListener: ClientListener;
      readonly peerListener: PeerListener;
      readonly http: HttpEndpoints | null;
      readonly tls: readonly TlsFiles[];
      readonly audit: AuditTrail;
      /** The node's own intervals (the token tidy, watch progress and cut-off checks), cleared first at a stop. */
      readonly timers: readonly NodeJS.Timeout[];
      /** Stops listening for the test failpoints' reload signal (a no-op without failpoints). */
      readonly releaseFailpointSignal: () => void;
      /** The leader's periodic work (rotations, expiry, lease sweeps), stopped first. */
      readonly leaderTasks: readonly { stop(): void }[];
      readonly readTracker: ReadTracker;
      readonly watches: WatchHub;
    },
  ) {}

  static async start(config: NodeConfig, options: NodeStartOptions = {}): Promise<StrongroomNode> {
    // What was opened so far, undone in reverse if a later step fails (a port in use, a bad
    // certificate), so a failed start leaves no LevelDB lock, timer or listener behind.
    const undo: (() => unknown)[] = [];
    memoizePeerCertificates();
    try {
      return await StrongroomNode.assemble(config, options, undo);
    } catch (error) {
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch {
          // Undoing is best effort; the start's own error is the one to report.
        }
      }
      throw error;
    }
  }

  private static async assemble(
    config: NodeConfig,
    options: NodeStartOptions,
    undo: (() => unknown)[],
  ): Promise<StrongroomNode> {
    const logger = options.logger ?? createLogger(config.nodeId, config.log.level);
    mkdirSync(config.dataDir, { recursive: true });
    // What a restore cut short by a stop or a crash left behind (ciphertext, of no further use).
    const restoreStagingDirectory = join(config.dataDir, "restore");
    rmSync(restoreStagingDirectory, { recursive: true, force: true });
    // The state store first: its LevelDB lock keeps a second process off the whole data directory,
    // the Raft log's segment files included.
    const state = await SecretStateMachine.open(join(config.dataDir, "state"), defaultStateLimits, {
      writeBufferBytes: config.storage.stateWriteBufferBytes,
    });
    undo.push(() => state.close());
    const { store: logStore, movedFromLevelDb } = await openNodeLog(config.dataDir);
    undo.push(() => logStore.close());
    if (movedFromLevelDb)
      logger.info(
        { directory: logStore.directory },
        "the Raft log was moved from LevelDB into segment files",
      );
    const barrier = new Barrier();
    const registry = new Registry();
    if (options.processMetrics === true)
      collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: eventLoopSampleMs });
    // What each node runs, for dashboards and upgrades (mixed versions while nodes roll).
    new Gauge({
      name: "strongroom_build_info",
      help: "Always 1; the labels say which strongroom and which Node.js this node runs.",
      labelNames: ["version", "node_version"],
      registers: [registry],
    }).set({ version: strongroomVersion(), node_version: process.versions.node }, 1);
    const onReloadError = (port: "peer" | "client") => (error: Error) =>
      logger.error({ port, error: error.message }, "a TLS file change was refused");
    const peerTls = new TlsFiles(config.tls.peer, { onReloadError: onReloadError("peer") });
    undo.push(() => peerTls.close());
    const clientTls = new TlsFiles(config.tls.client, { onReloadError: onReloadError("client") });
    undo.push(() => clientTls.close());
    const members = new MemberDirectory(config.nodeId, config.members, {
      region: config.region,
      zone: config.zone,
    });
    await members.reload(state);
    const accessView = new AccessView(state, barrier, registry);
    await accessView.reload();

    let raft: RaftNode<ApplyResult | null> | null = null;
    /** Set once made: a fatal stop of the Raft node, which may come before, abandons it. */
    let auditTrail: AuditTrail | null = null;
    /** Set once the node's parts are up (the Raft node's leader changes may come before). */
    let clusterFeatures: ClusterFeatures | null = null;
    const raftNode = (): RaftNode<ApplyResult | null> => {
      if (raft === null) throw new Error("the Raft node is not started yet");
      return raft;
    };
    const updateCampaign = () => {
      // A sealed node of an initialized cluster must not lead: it could neither serve nor propose.
      raft?.setCampaignAllowed(!keeper.initialized() || !keeper.sealed());
    };
    const standard = new StandardServices();
    // What zeroes its copies of keys derived from the root key, and drops what it keeps under
    // them, when the node seals (the authorizer and the audit trail, made below).
    const onSealed: (() => void)[] = [];
    const keeper = new SealKeeper({
      state,
      barrier,
      ...(config.seal.pkcs11 === undefined ? {} : { pkcs11: validatePkcs11Config(config.seal.pkcs11) }),
      shareAttemptTimeoutMs: config.seal.shareAttemptTimeoutMs,
      autoUnsealRetryMaxMs: config.seal.autoUnsealRetryMaxMs,
      onChange: () => {
        if (keeper.sealed()) {
          accessView.forgetDecrypted();
          for (const forget of onSealed) forget();
        }
        updateCampaign();
        standard.setServing(keeper.initialized() && !keeper.sealed());
        logger.info({ sealed: keeper.sealed(), initialized: keeper.initialized() }, "seal state changed");
      },
      onAutoUnsealFailure: (message) => logger.warn({ cause: message }, "HSM auto-unseal failed; retrying"),
    });

    const testFaults = activeTestFaults();
    if (testFaults.size > 0)
      logger.warn({ testFaults: [...testFaults] }, "TEST FAULTS ARE ON: this node is deliberately broken");
    const failpoints = failpointsFromEnv();
    let releaseFailpointSignal = () => {};
    if (failpoints !== null) {
      const reloadFailpoints = () => {
        const problem = failpoints.reload();
        if (problem !== null) logger.error({ problem }, "test failpoints refused; all disarmed");
        logger.warn({ failpoints: failpoints.describe() }, failpointsReadMessage);
      };
      reloadFailpoints();
      process.on("SIGUSR2", reloadFailpoints);
      releaseFailpointSignal = () => process.off("SIGUSR2", reloadFailpoints);
      undo.push(releaseFailpointSignal);
    }
    // A call waits for a leader up to three election timeouts (an election, and a split vote), and
    // at least 2 s: a loaded machine's elections run long, and a client without retries has only
    // this wait (CI measured elections past 600 ms at 20 ms ticks).
    const leaderWaitMs = Math.max(2000, 3 * config.raft.electionTicks * config.raft.tickMs);
    // A member that leaves a request unanswered for an election timeout is out of reach, as a
    // leader's CheckQuorum judges it.
    const contact = new PeerContact(config.raft.electionTicks * config.raft.tickMs);
    /** Whether this node hears too few voters to make a quorum (peer-contact.ts). */
    const cutOff = () => contact.cutOff(config.nodeId, raftNode().status().membership.voters);
    const reads = new ReadBarrier(raftNode, contact, testFaults.has("stale-reads"), leaderWaitMs);
    const peerErrors = new Map<string, string>();
    const transport = new GrpcPeerTransport({
      nodeId: config.nodeId,
      peers: members.peers,
      tls: peerTls,
      // What keeps it from campaigning (updateCampaign) keeps leaders from offering it the lead.
      declinesLeadership: () => keeper.initialized() && keeper.sealed(),
      dialAhead: () => {
        const status = raftNode().status();
        return status.removed ? [] : [...status.membership.voters, ...status.membership.learners];
      },
      onStreamError: (peer, details) => {
        const explained = explainPeerFailure(peer, members.peers.get(peer) ?? "?", details);
        // Logged once per cause, not at every retry.
        if (peerErrors.get(peer) !== explained)
          logger.warn({ peer, cause: explained }, "cannot reach a peer");
        peerErrors.set(peer, explained);
      },
    });
    /** A member no leadership is handed to (leadership.ts): it said it is sealed, or is out of reach. */
    const cannotLead: CannotLead = (member) =>
      transport.declinesLeadership(member) || contact.outOfReach(member);
    // Every Raft message in and out at the trace level: what to read when replication stalls.
    const tracing = logger.isLevelEnabled("trace");
    const observedTransport: Transport = {
      send: (messages) => {
        contact.sent(messages);
        if (tracing)
          for (const message of messages) logger.trace({ raft: describeMessage(message) }, "raft send");
        transport.send(messages);
      },
      listen: (handler) =>
        transport.listen((message: Message) => {
          if (tracing) logger.trace({ raft: describeMessage(message) }, "raft receive");
          contact.heardFrom(message.from);
          peerErrors.delete(message.from);
          handler(message);
        }),
      close: () => transport.close(),
    };
    const watches = new WatchHub(config.watch, () => state.appliedRevision());
    new Gauge({
      name: "strongroom_watches_open",
      help: "Watch streams this node serves now (it refuses more than watch.watchersMax).",
      registers: [registry],
      collect() {
        this.set(watches.watcherCount());
      },
    });
    onSealed.push(() =>
      watches.endAll(
        new NodeError("SEALED", "this node was sealed: watch through another node, or once it is unsealed"),
      ),
    );
    const logFailure = (what: string) => (error: unknown) =>
      logger.error({ error: (error as Error).message }, what);
    const stateMachine = new ObservedStateMachine(state, {
      onSystemRecord: (command) => {
        accessView.applied(command);
        members.applied(command, state).catch(logFailure("member reload failed"));
      },
      onSystemChange: () => keeper.reload().catch(logFailure("seal reload failed")),
      onSecretChange: (revision, command, version) => watches.record(revision, command, version),
      // A watch's client resumes on another node, whose history may hold what this one skips.
      onRestoring: () =>
        watches.replacing(
          new NodeError(
            "STATE_REPLACED",
            "this node is catching up from a snapshot, past changes it cannot send: watch through another node",
          ),
          new NodeError(
            "STATE_REPLACED",
            "this node is catching up from a snapshot: watch through another node",
          ),
        ),
      onRestore: () => {
        watches.replaced();
        accessView.reload().catch(logFailure("access records reload failed"));
        members.reload(state).catch(logFailure("member reload failed"));
      },
      // A backup's records replace the state in one apply: no watch is refused meanwhile.
      onLoad: () => {
        const restored = new NodeError(
          "HISTORY_COMPACTED",
          "the cluster was restored from a backup: list, then watch from now",
        );
        watches.replacing(restored, restored);
        watches.replaced();
      },
    });
    const raftMetrics = new RaftMetrics(registry, raftNode);
    const forwarder = new Forwarder(
      members.peers,
      peerTls,
      config.raft.electionTicks * config.raft.tickMs,
      (node) => contact.lastHeardFrom(node),
    );
    undo.push(() => forwarder.close());
    raft = await RaftNode.start({
      id: config.nodeId,
      logStore: raftMetrics.instrument(logStore),
      transport: raftMetrics.instrumentTransport(observedTransport),
      stateMachine,
      raft: {
        electionTicks: config.raft.electionTicks,
        heartbeatTicks: config.raft.heartbeatTicks,
        followerCatchUpBytesMax: config.raft.followerCatchUpBytesMax,
        // A value at the limit, encrypted and framed as a command, must fit in one entry.
        entryBytesMax: defaultStateLimits.valueBytesMax + 64 * 1024,
      },
      tickMs: config.raft.tickMs,
      requestTimeoutMs: config.requests.timeoutMs,
      snapshotEveryEntries: config.raft.snapshotEveryEntries,
      snapshotLogToStateRatio: config.raft.snapshotLogToStateRatio,
      snapshotLogBytesMax: config.raft.snapshotLogBytesMax,
      retainEntries: config.raft.retainEntries,
      ...(config.raft.snapshotTransferHoldEntries === undefined
        ? {}
        : { snapshotTransferHoldEntries: config.raft.snapshotTransferHoldEntries }),
      ...(failpoints === null ? {} : { failpoint: failpoints.hit }),
      ...(config.clusterState === "new"
        ? { bootstrap: { voters: config.members.map((member) => member.id), learners: [] } }
        : {}),
      onSoftState: (soft) => {
        // A new leader reads the record before its first writes ask (the entries it holds, at least).
        if (soft.role === "leader") void clusterFeatures?.read().catch(() => {});
        forwarder.leaderChanged(soft.leader);
        raftMetrics.noteLeader(soft.leader);
        logger.info({ role: soft.role, leader: soft.leader, term: soft.term }, "raft state changed");
      },
      onRemoved: () => {
        logger.warn("this node was removed from the cluster: it refuses calls that need one; stop it");
        // Its state moves no more: a watch here would wait forever.
        watches.retire(
          new NodeError("REMOVED", "this node was removed from the cluster: watch through another member"),
        );
      },
      farewellPassesOver: cannotLead,
      onFatal: (error, farewellTo) => {
        const hint = /belongs to another cluster/.test(error.message)
          ? " (a node joining an existing cluster must start with clusterState: existing and an empty data directory)"
          : "";
        logger.fatal({ error: `${error.message}${hint}` }, "the Raft node stopped on a fatal error");
        const fatal = new Error(`${error.message}${hint}`, { cause: error });
        // The process ends at onFatal: the audit's write in flight ends first (a full disk's
        // partial line cut off), and a leader's farewell leaves for the peer it names (the Raft
        // node sent it as it stopped); waited for at most fatalWaitMs, since on a hung disk the
        // audit's write would never end.
        const lastWork = Promise.all([
          auditTrail?.abandon(),
          farewellTo === null ? undefined : transport.flushed(farewellTo),
        ]).then(() => {});
        void settledWithin(lastWork, fatalWaitMs).then(() => options.onFatal?.(fatal));
      },
    });
    const startedRaft = raft;
    undo.push(() => startedRaft.stop());
    undo.push(() => keeper.close());
    await keeper.reload();
    updateCampaign();

    // Set once the node exists (below): a leader whose last audit sink failed hands over at once.
    let onAuditSinkFailed = (): void => {};
    const audit = new AuditTrail({
      directories: config.audit.directories ?? [join(config.dataDir, "audit")],
      sockets: config.audit.sockets,
      node: config.nodeId,
      maxFileBytes: config.audit.maxFileBytes,
      checkpointEvery: config.audit.checkpointEvery,
      durability: config.audit.durability,
      syncIntervalMs: config.audit.syncIntervalMs,
      rootKey: () => (keeper.sealed() ? null : keeper.rootKey()),
      registry,
      // Once per change, not per entry: a collector that is down fails every entry until it is back.
      onSinkChange: (sink, error) => {
        if (error === null) logger.info({ sink }, "audit sink writes again");
        else {
          logger.warn(
            { sink, error: error.message },
            "audit sink failed: its entries are counted in strongroom_audit_sink_failures_total until it writes again",
          );
          // Once the trail has counted the sink as failing (after this call): if it was the last
          // one, a leader hands over now, not at its next periodic look.
          setImmediate(() => onAuditSinkFailed());
        }
      },
    });
    auditTrail = audit;
    undo.push(() => audit.close());
    const refusals = new RefusalMetrics(registry);
    const authorizer = new Authorizer({
      view: accessView,
      initialized: () => keeper.initialized(),
      rootKey: () => (keeper.sealed() ? null : keeper.rootKey()),
      secretExists: async (path) => (await state.metadata(path)) !== null,
      isLeader: () => raftNode().leadership().role === "leader",
      catchUp: async (context) => {
        await reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
      },
      backoff: new TokenBackoff(),
      refusals,
      // On the leader itself, or through the peer channel to it (a call between nodes only).
      consumeTokenUse: async (context): Promise<number> => {
        const spend = { ...context, method: AccessService.consumeTokenUse.path };
        const { role, leader } = raftNode().leadership();
        if (role === "leader") return (await accessApi.consumeTokenUse(spend)).usesLeft;
        if (leader === null) throw new NodeError("NO_LEADER", "no leader to spend the token's use on; retry");
        const spent = await forwarder.forward<object, TokenInfo>(
          leader,
          access.consumeTokenUse as AnyApiMethod,
          {},
          spend,
        );
        return spent.usesLeft;
      },
    });
    onSealed.push(
      () => authorizer.forgetKeys(),
      () => audit.forgetKeys(),
    );
    const rateLimiter = new RateLimiter({ rules: config.auth.rateLimits, bucketsMax: 100_000, refusals });
    const executor = new Executor({
      leaderWaitMs,
      cutOff,
      removed: () => raftNode().isRemoved(),
      leader: () => {
        const { role, leader } = raftNode().leadership();
        return { isLeader: role === "leader", leaderId: leader };
      },
      forwarder,
      beforeRun: (context) => authorizer.spendUse(context),
      // The audit trail is outermost: every call is recorded, refused ones included.
      interceptors: [
        audit.interceptor(),
        rateLimiter.interceptor(),
        authorizer.interceptor(),
        ...(options.interceptors ?? []),
      ],
    });
    // The leader's lifecycle sweeps act only while this node leads and can decrypt.
    const leaderTaskFailed = (what: string, fields: Record<string, unknown>, error: unknown) => {
      const { level, message } = leaderTaskFailure(what, error);
      logger[level]({ ...fields, error: error instanceof Error ? error.message : String(error) }, message);
    };
    const leadsAndServes = () =>
      raftNode().status().role === "leader" && keeper.initialized() && !keeper.sealed();
    const rotator = new Rotator(
      {
        raft: raftNode,
        state,
        barrier,
        serving: leadsAndServes,
        registry,
        onFailure: (path, error) => leaderTaskFailed("a rotation", { path }, error),
        // An x509 generator's certificate: issued under its role, a lease of the secret's.
        issueCertificate: async (path, spec) => {
          const issued = await pkiEngine.issue(spec.role, spec.commonName, spec.dnsNames, spec.ttlMs);
          await leaseManager.recordCertificate(`secret:${path}`, spec.role, issued);
          return { ...issued, caPem: (await pkiEngine.ca()).certificatePem };
        },
      },
      config.rotation,
    );
    rotator.start();
    undo.push(() => rotator.stop());
    const expirySweeper = new ExpirySweeper(
      {
        raft: raftNode,
        state,
        serving: leadsAndServes,
        registry,
        onError: (path, error) => leaderTaskFailed("erasing an expired secret", { path }, error),
      },
      config.rotation,
    );
    expirySweeper.start();
    undo.push(() => expirySweeper.stop());
    // The leader moves to the preferred region when a voter there is caught up (docs/multi-region.md).
    const placement = new LeaderPlacement(
      () => ({
        status: raftNode().status(),
        locations: members.locations,
        preferredRegion: config.preferredLeaderRegion,
        cannotLead,
      }),
      (target) => raftNode().transferLeadership(target),
      {
        onHandover: (target, region) =>
          logger.info({ target, region }, "handing leadership to a voter in the preferred region"),
        onQuorumRegions: (regions) =>
          logger.warn({ regions }, "losing one of these regions loses the quorum: spread the voters"),
      },
      Date.now,
      // A handover to a voter that cannot take it (cut off, or sealed since it last said) holds
      // proposals for up to an election timeout: first tried again after four of them, at least 2 s.
      Math.max(2000, 4 * config.raft.tickMs * config.raft.electionTicks),
    );
    const placementTask = new PeriodicTask(
      config.raft.tickMs * config.raft.electionTicks * 2,
      leadsAndServes,
      async () => {
        placement.check();
      },
      (error) => leaderTaskFailed("the leader placement check", {}, error),
    );
    placementTask.start();
    undo.push(() => placementTask.stop());
    const readTracker = new ReadTracker(join(config.dataDir, "last-reads.json"), readTrackerPathsMax);
    readTracker.load();
    readTracker.start();
    undo.push(() => readTracker.stop());
    const memberGates = new Map<number, () => boolean>(
      Object.values(peerFeatures).map((feature) => [
        feature,
        memberFeatureGate(
          feature,
          config.nodeId,
          () => {
            const { voters, learners } = raftNode().status().membership;
            return [...voters, ...learners];
          },
          (member) => transport.featuresOf(member),
        ),
      ]),
    );
    const systemRecords = new SystemRecords({
      raft: raftNode,
      barrier,
      state,
      systemPutAllUsable: () => clusterFeatures?.usable(peerFeatures.systemPutAll) ?? false,
    });
    clusterFeatures = new ClusterFeatures({
      state,
      propose: (command) => systemRecords.propose(command),
      everyMemberHas: (feature) => memberGates.get(feature)?.() ?? false,
    });
    await clusterFeatures.read();
    const recordedFeatures = clusterFeatures;
    // Reads from the leader's lease (raft.leaseReads), once every voter withholds its vote as the
    // lease needs: an older member would not. Looked at by the leader with the features, each second.
    const readLeaseMs = config.raft.leaseReads
      ? readLeaseMsFor(config.raft.tickMs, config.raft.electionTicks, config.raft.leaseClockDrift)
      : 0;
    let readLeaseStarted = false;
    const startReadLease = () => {
      if (readLeaseMs === 0 || readLeaseStarted || !recordedFeatures.usable(peerFeatures.readLeaseVotes))
        return;
      readLeaseStarted = true;
      raftNode().setReadLease(readLeaseMs);
      logger.info({ readLeaseMs }, "linearizable reads are served from the leader's lease");
    };
    new Gauge({
      name: "strongroom_raft_read_lease_seconds",
      help: "How long this node's read lease lasts, when it leads, after a quorum acknowledged a heartbeat (raft.leaseReads); 0: its linearizable reads wait for a heartbeat round (off, or not yet started by this node as leader).",
      registers: [registry],
      collect() {
        this.set(readLeaseStarted ? readLeaseMs / 1000 : 0);
      },
    });
    // The leader records what every member understands as soon as it has heard them all.
    const featuresTask = new PeriodicTask(
      featuresRecordEveryMs,
      leadsAndServes,
      () =>
        recordedFeatures
          .recordAgreed([
            peerFeatures.requestIds,
            peerFeatures.systemPutAll,
            peerFeatures.tokenRoles,
            peerFeatures.tokenBinding,
            peerFeatures.readLeaseVotes,
          ])
          .then(startReadLease),
      (error) => leaderTaskFailed("recording the cluster's features", {}, error),
    );
    featuresTask.start();
    undo.push(() => featuresTask.stop());
    new Gauge({
      name: "strongroom_cluster_features",
      help: "Features the cluster recorded that every member understands, a bit each (1: request ids, 2: this record, 4: system records written together, 8: token roles, 16: tokens bound to identities, 32: votes withheld as read leases need).",
      registers: [registry],
      collect() {
        // The record as last read; a follower reads it again for the next scrape.
        recordedFeatures.refresh();
        this.set(recordedFeatures.recordedFeatures());
      },
    });
    const fingerprints = new RequestFingerprints(
      () => (keeper.sealed() ? null : keeper.rootKey()),
      () => recordedFeatures.usable(peerFeatures.requestIds),
    );
    onSealed.push(() => fingerprints.forget());
    const secrets = secretsMethods({
      fingerprints,
      readTracker,
      // Every other member's record of reads, each given a few seconds at most.
      peerReadTimes: async (prefix, context) => {
        const { membership } = raftNode().status();
        const others = [...membership.voters, ...membership.learners].filter((id) => id !== config.nodeId);
        const asked = { ...context, answerBy: Math.min(context.answerBy, performance.now() + 3000) };
        const settled = await Promise.allSettled(
          others.map((id) =>
            forwarder.forward<ReadTimesRequest, ReadTimesResponse>(
              id,
              secrets.readTimes as AnyApiMethod,
              { prefix },
              asked,
            ),
          ),
        );
        const answers: ReadTimes[] = [];
        const missing: string[] = [];
        for (const [position, outcome] of settled.entries()) {
          if (outcome.status === "fulfilled")
            answers.push({
              lastRead: new Map(Object.entries(outcome.value.lastReadMs)),
              since: outcome.value.trackedSinceMs,
            });
          else missing.push(others[position] ?? "");
        }
        return { answers, missing };
      },
      rotator,
      raft: raftNode,
      state,
      barrier,
      keeper,
      reads,
      limits: defaultStateLimits,
      requireIssuer: async (context, role) => {
        authorizer.require(await authorizer.caller(context), `sys/pki/issue/${role}`, "update");
      },
    });
    const systemPutAllUsable = () => recordedFeatures.usable(peerFeatures.systemPutAll);
    const setupLock = new ClusterSetupLock();
    const sys = sysMethods({
      nodeId: config.nodeId,
      raft: raftNode,
      cannotLead,
      electionTimeoutMs: config.raft.electionTicks * config.raft.tickMs,
      state,
      keeper,
      reads,
      shareAttemptTimeoutMs: config.seal.shareAttemptTimeoutMs,
      issueRootToken: (createdBy) => accessApi.issueRootToken(createdBy),
      systemPutAllUsable,
      setupLock,
    });
    const clusterApi = new ClusterApi({
      nodeId: config.nodeId,
      region: config.region,
      zone: config.zone,
      raft: raftNode,
      revisionOf: (index) => state.revisionOf(index),
      keeper,
      members,
      peerErrors,
      declinesLeadership: (member) => transport.declinesLeadership(member),
      outOfReach: (member) => contact.outOfReach(member),
      lastHeardFrom: (member) => contact.lastHeardFrom(member),
      promoteLagEntriesMax: config.raft.promoteLagEntriesMax,
    });
    const cluster = clusterMethods(clusterApi);
    registerMemberMetrics(registry, () => clusterApi.membersView());
    const accessApi = new AccessApi({
      records: systemRecords,
      keeper,
      reads,
      view: accessView,
      authorizer,
      limits: { ...config.auth, leasesPerIdentityMax: config.leases.perIdentityMax },
      tokenRolesUsable: () => recordedFeatures.usable(peerFeatures.tokenRoles),
      tokenBindingUsable: () => recordedFeatures.usable(peerFeatures.tokenBinding),
    });
    const pkiEngine = new PkiEngine(systemRecords, config.leases);
    const leaseManager = new LeaseManager(
      {
        view: accessView,
        records: systemRecords,
        pki: pkiEngine,
        tokens: accessApi,
        serving: leadsAndServes,
        registry,
        onError: (what, error) => leaderTaskFailed("a lease sweep step", { lease: what }, error),
      },
      config.leases,
    );
    leaseManager.start();
    undo.push(() => leaseManager.stop());
    const revocation = new IdentityRevocation({
      view: accessView,
      records: systemRecords,
      leases: leaseManager,
      authorizer,
      state,
      rotator,
    });
    const access = {
      ...accessMethods(accessApi, keeper),
      ...revocationMethods({ revocation, keeper, reads }),
    };
    const pki = pkiMethods({ engine: pkiEngine, leases: leaseManager, keeper, reads });
    const leases = leasesMethods({ leases: leaseManager, keeper, reads });
    const snapshotParts = {
      raft: raftNode,
      state,
      keeper,
      snapshotBytesMax: config.requests.snapshotBytesMax,
      stagingDirectory: restoreStagingDirectory,
      reads,
      timeoutMs: config.requests.timeoutMs,
      systemPutAllUsable,
      setupLock,
    };
    const byPath = new Map<string, AnyApiMethod>(
      [secrets, sys, cluster, access, pki, leases].flatMap((table) =>
        Object.values(table).map((entry) => [entry.definition.path, entry] as const),
      ),
    );
    const peerListener = await listening(
      "listen.peer",
      config.listen.peer,
      startPeerListener({
        address: config.listen.peer,
        tls: peerTls,
        transport,
        forwarding: new ForwardReceiver({
          methods: byPath,
          execute: (entry, request, context) => executor.execute(entry, request, context),
          deadlineMsMax: config.requests.timeoutMs,
          answerReserveMs: config.requests.answerReserveMs,
        }),
      }),
    );
    undo.push(() => peerListener.close());
    const clientListener = await listening(
      "listen.client",
      config.listen.client,
      startClientListener({
        address: config.listen.client,
        tls: clientTls,
        executor,
        secrets,
        sys,
        cluster,
        access,
        pki,
        leases,
        identitySource: config.auth.identitySource,
        timeoutMs: config.requests.timeoutMs,
        answerReserveMs: config.requests.answerReserveMs,
        messageBytesMax: config.requests.messageBytesMax,
        standard,
        watch: watchHandler({
          hub: watches,
          requireServing: () => {
            requireServing(keeper, null);
            // Cut off, it applies nothing new: a watch would wait, silent, as long as the cut.
            if (cutOff()) throw cutOffError();
          },
          limits: defaultStateLimits,
          mayRead: (context, path) => authorizer.mayReadNow(context, path),
          checkCaller: (context) => authorizer.checkCallerNow(context),
          perIdentityMax: config.watch.watchersPerIdentityMax,
          appliedRevision: () => state.appliedRevision(),
          revisionOf: (index) => state.revisionOf(index),
          reads,
          timeoutMs: config.requests.timeoutMs,
        }),
        saveSnapshot: saveSnapshotHandler(snapshotParts),
        restoreSnapshot: restoreSnapshotHandler(snapshotParts),
        metrics: new GrpcMetrics(registry),
        leaderId: () => raftNode().leadership().leader,
        audit,
        // A stream runs on the node that took it: it spends its token's use there.
        authorize: async (context, request) => {
          rateLimiter.check(context, request);
          await authorizer.check(context, request);
          await authorizer.spendUse(context);
        },
        streamsPerConnectionMax: config.requests.streamsPerConnectionMax,
        keepalive: {
          intervalMs: config.requests.keepaliveIntervalMs,
          timeoutMs: config.requests.keepaliveTimeoutMs,
        },
      }),
    );
    undo.push(() => clientListener.close(0));
    standard.setServing(keeper.initialized() && !keeper.sealed());

    registerSealMetrics(registry, {
      seals: () => keeper.sealSet(),
      autoUnsealer: () => keeper.autoUnsealer(),
    });
    const http =
      config.listen.http === undefined
        ? null
        : await listening(
            "listen.http",
            config.listen.http,
            startHttpEndpoints(
              config.listen.http,
              () => {
                const status = raftNode().status();
                return {
                  initialized: keeper.initialized(),
                  sealed: keeper.sealed(),
                  leader: status.role === "leader",
                  nodeId: config.nodeId,
                  term: status.term,
                  leaderKnown: status.leader !== null,
                  removed: raftNode().isRemoved(),
                  auditSinksFailing: audit.failingSinks().length,
                  auditSinksStalled: audit.stalledSinks().length,
                };
              },
              registry,
            ),
          );

    // The leader removes expired and orphaned tokens now and then (every node refuses them already).
    const tidyTimer = setInterval(() => {
      if (raftNode().status().role !== "leader" || keeper.sealed() || !keeper.initialized()) return;
      accessApi.tidy().catch(logFailure("token tidy failed"));
    }, config.auth.tidyIntervalMs);
    tidyTimer.unref();
    undo.push(() => clearInterval(tidyTimer));
    // Watches that asked are told the revision they are up to date with (watch-hub.ts).
    const progressTimer = setInterval(() => watches.sendProgress(), config.watch.progressIntervalMs);
    progressTimer.unref();
    undo.push(() => clearInterval(progressTimer));
    // A node cut off from a quorum (a partition's minority side) ends its watches, as it refuses
    // calls (executor.ts): their clients go to a node that hears the cluster, not wait in silence.
    const cutOffTimer = setInterval(() => {
      if (watches.watcherCount() > 0 && cutOff()) watches.endAll(cutOffError());
    }, config.raft.electionTicks * config.raft.tickMs);
    cutOffTimer.unref();
    undo.push(() => clearInterval(cutOffTimer));
    const node = new StrongroomNode(
      config,
      { client: clientListener.port, peer: peerListener.port, http: http?.port ?? null },
      {
        logger,
        raft,
        logStore,
        state,
        keeper,
        transport,
        cannotLead,
        forwarder,
        clientListener,
        peerListener,
        http,
        tls: [peerTls, clientTls],
        audit,
        timers: [tidyTimer, progressTimer, cutOffTimer],
        releaseFailpointSignal,
        leaderTasks: [rotator, expirySweeper, leaseManager, placementTask, featuresTask],
        readTracker,
        watches,
      },
    );
    node.startLeaderHandoffWhenUnfit();
    onAuditSinkFailed = () => node.handOffIfUnfit();
    // Only now: the listeners hold their ports (see startDialing).
    transport.startDialing();
    logger.info({ ports: node.ports, version: strongroomVersion() }, "node started");
    return node;
  }

  isLeader(): boolean {
    return this.parts.raft.leadership().role === "leader";
  }

  sealStatus(): { readonly initialized: boolean; readonly sealed: boolean } {
    return { initialized: this.parts.keeper.initialized(), sealed: this.parts.keeper.sealed() };
  }

  /**
   * Graceful shutdown: a leader hands leadership to a peer first; calls in flight get `graceMs`
   * to finish; then every part stops in reverse order, the state flushed to disk last.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { logger } = this.parts;
    if (this.handoffTimer !== null) clearInterval(this.handoffTimer);
    for (const timer of this.parts.timers) clearInterval(timer);
    this.parts.releaseFailpointSignal();
    for (const task of this.parts.leaderTasks) task.stop();
    // How long each step took, in the last log line: a slow shutdown says where it waited. A stop
    // that has not ended after a few seconds says so at warn, naming the step it waits on: one
    // killed for not ending (a supervisor's timeout) otherwise leaves nothing after "shutting
    // down" (docs/chaos.md).
    const phases: Record<string, number> = {};
    const stopStart = performance.now();
    let phaseStart = stopStart;
    let waitingOn = "handOver";
    const took = (phase: string, next: string) => {
      const now = performance.now();
      phases[`${phase}Ms`] = Math.round(now - phaseStart);
      phaseStart = now;
      waitingOn = next;
    };
    const slowStop = setInterval(
      () =>
        logger.warn(
          { waitingOn, stepMs: Math.round(performance.now() - phaseStart), ...phases },
          `the stop has taken ${Math.round((performance.now() - stopStart) / 1000)} s so far`,
        ),
      stopSlowLogMs,
    );
    slowStop.unref();
    try {
      await this.stopParts(graceMs, took);
    } finally {
      clearInterval(slowStop);
    }
    logger.info(phases, "node stopped");
  }

  /** The steps of stop(), each reported to `took` as it ends, with the name of the next. */
  private async stopParts(graceMs: number, took: (phase: string, next: string) => void): Promise<void> {
    const { raft, logger } = this.parts;
    await handOverLeadership(raft, this.parts.cannotLead, {
      waitMs: Math.min(graceMs, 2000),
      electionTimeoutMs: this.config.raft.electionTicks * this.config.raft.tickMs,
    });
    took("handOver", "clientCalls");
    // A watch never ends by itself: it would hold the shutdown for the whole grace. Ended now,
    // its client resumes on another node from the last revision it saw.
    this.parts.watches.endAll(new NodeError("STOPPING", "this node is stopping: watch through another node"));
    await this.parts.clientListener.close(graceMs);
    took("clientCalls", "raftAndPeers");
    await raft.stop();
    this.parts.forwarder.close();
    await this.parts.peerListener.close();
    took("raftAndPeers", "audit");
    await this.parts.http?.close();
    this.parts.keeper.close();
    await this.parts.audit.close();
    const unwritten = this.parts.readTracker.stop();
    if (unwritten !== null)
      logger.warn(
        { error: unwritten.message },
        "the last-read times could not be written: the stale report may call this run's last reads unread",
      );
    took("audit", "storage");
    // After a failed write (a full disk: LevelDB keeps the error until it is opened again) the
    // applied index cannot be written; the stores are closed anyway, and the next start replays
    // the log from the last one written.
    await this.parts.state.flush().catch((error: unknown) => {
      logger.error(
        { error: error instanceof Error ? error.message : String(error) },
        "the state's applied index could not be written at the stop: the next start replays more of the log",
      );
    });
    await this.parts.state.close();
    await this.parts.logStore.close();
    for (const files of this.parts.tls) files.close();
    took("storage", "exit");
  }

  /**
   * A leader that cannot serve offers leadership to each voter in turn until one takes it:
   * - sealed (an operator sealed it, or the cluster was just initialized and this leader is not
   *   unsealed yet): it could neither serve nor propose (a sealed voter refuses to campaign);
   * - every audit sink failing (its audit disk full, say): it refuses every call
   *   AUDIT_UNAVAILABLE, and while its heartbeats go on no other node would take over, so the
   *   whole cluster would take no write until its disk had room again (measured on a leader whose
   *   audit directory was a full tmpfs, test/server/audit-cluster.test.ts).
   */
  private startLeaderHandoffWhenUnfit(): void {
    const everyMs = this.config.raft.tickMs * this.config.raft.electionTicks * 2;
    this.handoffTimer = setInterval(() => this.handOffIfUnfit(), everyMs);
    this.handoffTimer.unref();
  }

  /**
   * One offer (see startLeaderHandoffWhenUnfit), to the voters that would take it, furthest along
   * first: a transfer to one behind waits for it to catch up. Also called at once when an audit
   * sink fails (it may have been the last): the periodic look came up to two election timeouts
   * later, while every call was refused.
   */
  private handOffIfUnfit(): void {
    const { raft, keeper, audit, logger, cannotLead } = this.parts;
    if (this.stopping || raft.isStopped()) return;
    const status = raft.status();
    if (status.role !== "leader" || !keeper.initialized() || status.leadTransferee !== null) return;
    const auditBroken = !keeper.sealed() && audit.allSinksFailing();
    if (!keeper.sealed() && !auditBroken) return;
    // Not to a sealed voter, nor one out of reach: the offer would only cost this leader its lease.
    const others = leadershipCandidates(status, cannotLead);
    if (others.length === 0) return;
    const target = others[this.handoffCursor++ % others.length] ?? others[0] ?? "";
    if (auditBroken)
      logger.warn(
        { target, failing: audit.failingSinks() },
        "every audit sink of this leader fails: handing the leadership to another voter",
      );
    raft.transferLeadership(target);
  }
}

/** Resolves once `work` settles, or after `ms` if it has not by then; never rejects. */
function settledWithin(work: Promise<void> | undefined, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    if (work === undefined) done();
    else void work.then(done, done);
  });
}
