// The deterministic simulator: one seed is one universe. A cluster of simulated nodes runs on a
// simulated clock and network while a seeded nemesis crashes and restarts nodes, partitions them
// (symmetric, one-way, leader isolation, bridge), pauses them (a stopped process: what reaches
// it waits), makes links lossy, slow and duplicating, changes
// membership, transfers leadership, and nodes take snapshots, all while clients put, get and
// compare-and-set a few keys. Safety is checked at every step; at the end the faults heal and the
// cluster must elect a leader and commit a write within a bounded time (liveness), and the client
// history must be linearizable. Same seed, same run, same verdict.

import {
  type CheckOptions,
  checkLinearizability,
  type RegisterInput,
  type RegisterOperation,
  registerModel,
} from "../../chaos/checker/index.js";
import {
  bootstrapState,
  decodeMembershipChange,
  describeMessage,
  emptyState,
  type InjectedBug,
  type NodeId,
  NotLeaderError,
  RaftError,
  RaftInvariantError,
  type RaftStatus,
  SeededRandom,
} from "../core/index.js";
import { encodeCommand } from "./kv-state-machine.js";
import { calmNetwork, type NetworkConditions, SimNetwork } from "./network.js";
import { SafetyChecker, SafetyViolation } from "./safety-checker.js";
import { SimNode, type SimNodeOptions } from "./sim-node.js";

export const simBugs = [
  "commit-previous-term",
  "forget-vote",
  "honours-abandoned-transfers",
  "lease-too-long",
  "read-without-quorum",
  "skip-prev-check",
  "votes-after-restart",
] as const;
export type SimBug = (typeof simBugs)[number];

const coreBugs: Record<SimBug, InjectedBug | null> = {
  "commit-previous-term": "commitPreviousTerm",
  "forget-vote": null,
  "honours-abandoned-transfers": "honoursAbandonedTransfers",
  "lease-too-long": null,
  "read-without-quorum": "readWithoutQuorum",
  "skip-prev-check": "skipPrevCheck",
  "votes-after-restart": "votesAfterRestart",
};

export interface SimOptions {
  readonly seed: number;
  /** Simulated time units of the faulty phase (a node ticks about every 10). */
  readonly steps: number;
  readonly voters: 3 | 5;
  /** Learners at start; by default the seed picks 0 or 1. */
  readonly learners?: number;
  readonly bug?: SimBug;
  readonly trace?: (line: string) => void;
  readonly checkerStepsMax?: number;
}

export interface SimStats {
  timeUnits: number;
  leaderElections: number;
  writesOk: number;
  readsOk: number;
  unknownOutcomes: number;
  crashes: number;
  restarts: number;
  pauses: number;
  partitions: number;
  snapshotsInstalled: number;
  membershipChanges: number;
  transfers: number;
  messagesSent: number;
  messagesDropped: number;
  /** Reads leaders answered from their read lease, each checked against the newest leader elected. */
  leaseReads: number;
  linearizability: "linearizable" | "not-linearizable" | "unknown" | "not-checked";
}

export interface SimResult {
  readonly seed: number;
  readonly violation: SafetyViolation | null;
  readonly stats: SimStats;
}

const tickInterval = 10;
const electionTicks = 10;
const keys = ["a", "b", "c"];
const clientCount = 3;
const operationTimeout = 40 * tickInterval;
const livenessTimeMax = 60 * electionTicks * tickInterval;
/**
 * The read lease of seeds that lease: below the shortest time in which a voter that heard from the
 * leader counts electionTicks ticks (the first may come at once, then one per interval of at least
 * tickInterval - 1), by a tenth for drift, as a real node's configuration sets it.
 */
const readLeaseMs = Math.floor((electionTicks - 1) * (tickInterval - 1) * 0.9);
/**
 * The lease-too-long bug: a lease 1.5 times the right one, 108 time units where a voter's withheld
 * vote covers 81 at the least (90 at the usual tick).
 */
const leaseTooLongFactor = 1.5;
/** `items` in a random order (Fisher-Yates), drawn from `random`. */
function shuffled<T>(random: SeededRandom, items: readonly T[]): T[] {
  const order = [...items];
  for (let i = order.length - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    const a = order[i];
    const b = order[j];
    if (a !== undefined && b !== undefined) {
      order[i] = b;
      order[j] = a;
    }
  }
  return order;
}

/** How long a pause lasts, in time units: from a few ticks to twelve election timeouts. */
const pauseLengths = [30, 80, 150, 300, 600, 1200];

interface PendingOperation {
  readonly id: number;
  readonly client: number;
  readonly input: RegisterInput;
  readonly call: number;
  readonly deadline: number;
  readonly node: NodeId;
}

export function runSimulation(options: SimOptions): SimResult {
  return new Simulation(options).run();
}

class Simulation {
  private readonly random: SeededRandom;
  private readonly faultRandom: SeededRandom;
  private readonly clientRandom: SeededRandom;
  private readonly network: SimNetwork;
  private readonly checker = new SafetyChecker();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly spares: NodeId[] = [];
  private readonly nodeOptions: SimNodeOptions;
  /** Whether a removed node is shut down at once, or left running to learn it was removed. */
  private readonly removedLeftRunning: boolean;
  private readonly stats: SimStats = {
    timeUnits: 0,
    leaderElections: 0,
    writesOk: 0,
    readsOk: 0,
    unknownOutcomes: 0,
    crashes: 0,
    restarts: 0,
    pauses: 0,
    partitions: 0,
    snapshotsInstalled: 0,
    membershipChanges: 0,
    transfers: 0,
    messagesSent: 0,
    messagesDropped: 0,
    leaseReads: 0,
    linearizability: "not-checked",
  };
  private now = 0;
  /** History time: a counter bumped at every call and return, so real-time order is exact. */
  private historyClock = 0;
  private nextOperation = 1;
  private readonly pending = new Map<number, PendingOperation>();
  private readonly clientBusy = new Set<number>();
  private readonly leaderHint = new Map<number, NodeId>();
  private readonly lastSeen = new Map<string, string | null>();
  private readonly history: RegisterOperation[] = [];
  private readonly faultEvery: number;
  /** A node is paused about once in this many time units (0: never), drawn from its own stream. */
  private readonly pauseEvery: number;
  private readonly pauseRandom: SeededRandom;
  /**
   * In seeds that lease, the leader's followers are restarted together about once in this many time
   * units (0: never), drawn from a stream of their own: enough of them to free a quorum's votes if
   * a restarted voter did not withhold its own (the rule a lease rests on across a restart).
   */
  private readonly followersRestartEvery: number;
  private readonly followersRestartRandom: SeededRandom;
  private readonly newLeaderCrashChance: number;
  private phase: "faulty" | "healed" = "faulty";
  private readonly trace: (line: string) => void;
  private readonly tracing: boolean;
  private finalWrite: { operation: number; index: number | null } | null = null;

  constructor(private readonly options: SimOptions) {
    this.random = new SeededRandom(options.seed);
    this.faultRandom = this.random.fork();
    this.clientRandom = this.random.fork();
    this.network = new SimNetwork(this.random.fork());
    const parameters = this.random.fork();
    const traceLine = options.trace;
    this.tracing = traceLine !== undefined;
    this.trace =
      traceLine === undefined
        ? () => {}
        : (line) => traceLine(`[t=${String(this.now).padStart(6, "0")}] ${line}`);
    const bug = options.bug === undefined ? null : coreBugs[options.bug];
    // Per-seed limits, small enough that appends split, pipelines fill and snapshots go in chunks.
    // Picked in a fixed order: a new option is picked last, so every seed's earlier picks (and so
    // its run) stay what they were.
    const config = {
      random: parameters.fork(),
      clock: () => this.now,
      electionTicks,
      // Most seeds run the production setting; some run without PreVote or CheckQuorum, which
      // must stay safe too (and lets a stale leader linger, exposing read bugs).
      preVote: parameters.chance(0.75),
      checkQuorum: parameters.chance(0.75),
      heartbeatTicks: 2,
      messageBytesMax: parameters.pick([64, 256, 4096]),
      inflightMessagesMax: parameters.pick([1, 4, 64]),
      inflightBytesMax: 64 * 1024,
      snapshotChunkBytes: parameters.pick([32, 128, 1024]),
      snapshotChunksInflightMax: parameters.pick([1, 2, 4]),
      ...(bug === null ? {} : { injectedBugs: new Set([bug]) }),
    };
    const snapshotEveryEntries = parameters.pick([10, 25, 60, 1_000_000]);
    const retainEntries = parameters.pick([0, 2, 8]);
    this.faultEvery = parameters.pick([40, 80, 160, 320]);
    this.newLeaderCrashChance = parameters.pick([0, 0.1, 0.3]);
    const learners = options.learners ?? parameters.pick([0, 1]);
    // 0: a leader reads every entry a follower lacks back from the disk; 2^30: it keeps them all.
    const followerCatchUpBytesMax = parameters.pick([0, 64, 1024, 2 ** 30]);
    this.removedLeftRunning = parameters.pick([false, true]);
    // How long a leader's own log write takes, its appends already sent (0: at once).
    const leaderWriteDelay = parameters.pick([0, 2, 6]);
    // How long a node's own snapshot takes to save, Readys held meanwhile (0: at once).
    const snapshotSaveDelay = parameters.pick([0, 3, 12]);
    // Half the seeds that check quorum (a lease needs it) serve reads from a leader's lease.
    // The lease bugs lease in every seed that can.
    const leaseBug =
      options.bug === "lease-too-long" ||
      options.bug === "votes-after-restart" ||
      options.bug === "honours-abandoned-transfers";
    const leases = config.checkQuorum && (parameters.chance(0.5) || leaseBug);
    this.nodeOptions = {
      config: { ...config, followerCatchUpBytesMax },
      forgetVote: options.bug === "forget-vote",
      snapshotEveryEntries,
      retainEntries,
      leaderWriteDelay,
      snapshotSaveDelay,
      readLeaseMs: leases ? readLeaseMs * (options.bug === "lease-too-long" ? leaseTooLongFactor : 1) : 0,
    };
    // Picked after the rest, with their own stream: a seed without pauses runs as it did before
    // pauses were simulated, and one with them as it did until its first pause.
    this.pauseEvery = parameters.pick([0, 500, 1500]);
    this.pauseRandom = parameters.fork();
    // Picked after pauses, likewise: a seed without these restarts runs as it did before them.
    this.followersRestartEvery = leases ? parameters.pick([0, 1000]) : 0;
    this.followersRestartRandom = parameters.fork();
    const voterIds = Array.from({ length: options.voters }, (_, i) => `n${i + 1}`);
    const learnerIds = Array.from({ length: learners }, (_, i) => `n${options.voters + i + 1}`);
    const initial = bootstrapState({ voters: voterIds, learners: learnerIds });
    for (const id of [...voterIds, ...learnerIds]) this.addNode(id, initial);
    for (let i = 0; i < 2; i++) this.spares.push(`n${options.voters + learners + i + 1}`);
    this.trace(
      `seed ${options.seed}: voters ${voterIds.join(",")}${learnerIds.length > 0 ? ` learners ${learnerIds.join(",")}` : ""}; ` +
        `messageBytesMax ${this.nodeOptions.config.messageBytesMax}, inflight ${this.nodeOptions.config.inflightMessagesMax}, ` +
        `snapshot every ${this.nodeOptions.snapshotEveryEntries} (chunks of ${this.nodeOptions.config.snapshotChunkBytes}), ` +
        `preVote ${this.nodeOptions.config.preVote}, checkQuorum ${this.nodeOptions.config.checkQuorum}, ` +
        `follower catch-up bytes in memory ${followerCatchUpBytesMax}, ` +
        `fault every ~${this.faultEvery}, new-leader crash chance ${this.newLeaderCrashChance}, ` +
        `removed nodes ${this.removedLeftRunning ? "left running" : "shut down"}, ` +
        `leader write delay ${leaderWriteDelay}, snapshot save delay ${snapshotSaveDelay}` +
        `${this.nodeOptions.readLeaseMs > 0 ? `, read lease ${this.nodeOptions.readLeaseMs}` : ""}` +
        `${this.pauseEvery > 0 ? `, a pause every ~${this.pauseEvery}` : ""}` +
        `${this.followersRestartEvery > 0 ? `, the leader's followers restarted every ~${this.followersRestartEvery}` : ""}`,
    );
  }

  run(): SimResult {
    let violation: SafetyViolation | null = null;
    try {
      for (; this.now < this.options.steps; this.now++) {
        if (this.faultRandom.nextInt(this.faultEvery) === 0) this.injectFault();
        if (this.pauseEvery > 0 && this.pauseRandom.nextInt(this.pauseEvery) === 0) this.pauseNode();
        if (
          this.followersRestartEvery > 0 &&
          this.followersRestartRandom.nextInt(this.followersRestartEvery) === 0
        )
          this.restartFollowers();
        this.advanceTime();
        this.runClients();
      }
      this.heal();
      this.checkLiveness();
      this.expireAll();
      this.checkHistory();
    } catch (error) {
      if (error instanceof SafetyViolation) violation = error;
      else if (error instanceof RaftInvariantError)
        violation = new SafetyViolation("invariant", error.message);
      else throw error;
      this.trace(`VIOLATION ${violation.message}`);
    }
    this.stats.timeUnits = this.now;
    for (const node of this.nodes.values()) this.stats.snapshotsInstalled += node.snapshotsInstalled;
    this.stats.messagesSent = this.network.sent;
    this.stats.messagesDropped = this.network.dropped;
    this.stats.leaseReads = this.checker.leaseReadsChecked;
    return { seed: this.options.seed, violation, stats: this.stats };
  }

  // -------------------------------------------------------------------------------------------
  // Time

  private advanceTime(): void {
    for (const node of this.nodes.values()) {
      if (node.pausedUntil === null || this.now < node.pausedUntil) continue;
      const callsFirst = this.pauseRandom.chance(0.5);
      this.trace(`${node.id} resumes (${callsFirst ? "client calls" : "messages"} first)`);
      node.resume(callsFirst);
    }
    for (const message of this.network.deliverDue(this.now)) {
      const node = this.nodes.get(message.to);
      if (node === undefined || !node.isUp()) continue;
      if (node.isPaused()) {
        node.hold(message);
        continue;
      }
      // Guarded: building this line for every message would cost more than delivering it.
      if (this.tracing) this.trace(`${message.from}→${message.to} ${describeMessage(message)}`);
      node.step(message);
    }
    for (const node of this.nodes.values()) node.finishWrite(this.now);
    for (const node of this.nodes.values()) node.finishSave(this.now);
    for (const node of this.nodes.values()) {
      if (this.now < node.nextTickAt) continue;
      node.nextTickAt += node.tickInterval;
      if (node.isUp() && !node.isPaused()) node.tick();
    }
    for (const operation of this.pending.values()) {
      if (operation.deadline <= this.now) this.giveUp(operation.id, "timed out");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Nodes

  private addNode(id: NodeId, initial: ReturnType<typeof emptyState>): SimNode {
    // Slightly different clock rates per node, so ticks drift against each other.
    const interval = tickInterval - 1 + this.random.nextInt(3);
    const node = new SimNode(
      id,
      initial,
      this.nodeOptions,
      {
        checker: this.checker,
        send: (message) => this.network.send(message, this.now),
        writeDone: (operation, result) => this.writeDone(operation, result),
        readDone: (operation, value) => this.readDone(operation, value),
        leaseReads: (nodeId, core, reads) => {
          // The leader votes for no one while it leads, a node that is down cannot vote now, and a
          // paused one has not counted the time it missed. Nor may one vote for a candidate acting
          // on a TimeoutNow of this leader's (its latest, which the others precede).
          const voters: NodeId[] = [];
          const withholding = new Set<NodeId>([nodeId]);
          const term = core.softState().term;
          const transfers = core.transfersSentThisTerm;
          for (const other of this.nodes.values()) {
            if (!core.hasVoter(other.id)) continue;
            voters.push(other.id);
            if (
              other.core === null ||
              (other.core.withholdsVotes &&
                (transfers === 0 || !other.core.votesForTransfer(term, transfers)))
            )
              withholding.add(other.id);
          }
          this.checker.onLeaseRead(nodeId, term, reads, voters, withholding);
        },
        roleChanged: (nodeId, previous, current, core) => {
          if (current.role === "leader" && previous.role !== "leader") {
            // It stops campaigning once it knows (its own log, or a member's answer).
            if (core.isRemoved())
              throw new SafetyViolation(
                "removed-leader",
                `${nodeId} leads in term ${current.term} though it knows it was removed`,
              );
            this.stats.leaderElections++;
            this.trace(`${nodeId} became leader of term ${current.term}`);
            this.checker.onLeader(nodeId, current.term, core);
            // New leaders are the most fragile moment (Figure 8): sometimes kill one mid-way through its first appends.
            const node = this.nodes.get(nodeId);
            if (
              node !== undefined &&
              this.phase === "faulty" &&
              this.faultRandom.chance(this.newLeaderCrashChance)
            ) {
              node.crashAfterPersists = 1 + this.faultRandom.nextInt(6);
              this.trace(
                `nemesis: crash new leader ${nodeId} after ${node.crashAfterPersists} more persists`,
              );
            }
          } else if (previous.role !== current.role) {
            this.trace(`${nodeId} ${previous.role}→${current.role} (term ${current.term})`);
          }
        },
        membershipApplied: (nodeId, entry) => {
          const change = decodeMembershipChange(entry.data);
          if (change.kind !== "removeNode") return;
          const removed = this.nodes.get(change.node);
          if (removed === undefined || removed.decommissioned || removed.leftRunning) return;
          if (this.removedLeftRunning) {
            removed.leftRunning = true;
            this.trace(`${change.node} removed (applied on ${nodeId}), left running`);
            return;
          }
          // The removal is committed: the operator shuts the removed node down for good.
          this.trace(`${change.node} decommissioned (removal applied on ${nodeId})`);
          this.crashNode(removed);
          removed.decommissioned = true;
        },
        leaderCommitted: (nodeId, core, from, to) => {
          const disks = new Map<NodeId, SimNode["disk"]>();
          for (const node of this.nodes.values()) if (!node.decommissioned) disks.set(node.id, node.disk);
          this.checker.onLeaderCommitted(nodeId, core.status().membership.voters, disks, from, to);
        },
        crashed: (nodeId, orphaned) => {
          for (const operation of orphaned) this.giveUp(operation, `${nodeId} crashed`);
          this.network.discardFor(nodeId);
        },
        trace: (line) => this.trace(line),
        now: () => this.now,
      },
      interval,
      this.now + 1 + this.random.nextInt(interval),
    );
    this.nodes.set(id, node);
    return node;
  }

  private upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((node) => node.isUp());
  }

  private leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.upNodes()) {
      const soft = node.core?.softState();
      if (soft !== undefined && soft.role === "leader" && soft.term > bestTerm) {
        best = node;
        bestTerm = soft.term;
      }
    }
    return best;
  }

  private crashNode(node: SimNode): void {
    if (!node.isUp()) return;
    for (const operation of node.crash()) this.giveUp(operation, `${node.id} crashed`);
    this.network.discardFor(node.id);
  }

  // -------------------------------------------------------------------------------------------
  // The nemesis

  private injectFault(): void {
    const random = this.faultRandom;
    const roll = random.nextInt(100);
    const leader = this.leader();
    const up = this.upNodes().filter((node) => !node.decommissioned);
    const down = [...this.nodes.values()].filter((node) => !node.isUp() && !node.decommissioned);
    if (roll < 18) {
      if (up.length === 0) return;
      const victim = leader !== null && random.chance(0.5) ? leader : random.pick(up);
      this.stats.crashes++;
      if (random.chance(0.5)) {
        victim.crashAfterPersists = 1 + random.nextInt(3);
        this.trace(`nemesis: crash ${victim.id} after ${victim.crashAfterPersists} more persists`);
      } else {
        this.trace(`nemesis: crash ${victim.id}`);
        this.crashNode(victim);
      }
    } else if (roll < 36) {
      if (down.length === 0) return;
      const node = random.pick(down);
      this.stats.restarts++;
      this.trace(`nemesis: restart ${node.id}`);
      node.start();
    } else if (roll < 56) {
      this.partition(leader);
    } else if (roll < 66) {
      if (!this.network.hasPartition()) return;
      this.trace("nemesis: heal partitions");
      this.network.heal();
    } else if (roll < 78) {
      const conditions: NetworkConditions = random.pick([
        calmNetwork,
        { dropRate: 0.1, duplicateRate: 0.05, delayMin: 1, delayMax: 10 },
        { dropRate: 0, duplicateRate: 0, delayMin: 1, delayMax: 60 },
        { dropRate: 0.25, duplicateRate: 0.1, delayMin: 1, delayMax: 120 },
      ]);
      this.network.conditions = conditions;
      this.trace(
        `nemesis: network drop ${conditions.dropRate} duplicate ${conditions.duplicateRate} delay ${conditions.delayMin}-${conditions.delayMax}`,
      );
    } else if (roll < 92) {
      this.changeMembership(leader);
    } else {
      // An operator's request to a paused leader would wait for it: none is made.
      if (leader?.core == null || leader.isPaused()) return;
      const voters = leader.core.status().membership.voters.filter((id) => id !== leader.id);
      if (voters.length === 0) return;
      const target = random.pick(voters);
      try {
        leader.core.transferLeadership(target);
        this.stats.transfers++;
        this.trace(`nemesis: transfer leadership ${leader.id} → ${target}`);
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
      }
      leader.process();
    }
  }

  /**
   * Crashes and at once restarts as many of the leader's voting followers as a quorum could do
   * without (all but quorum - 1 of the voters, the leader among those kept): while the leader's
   * lease lasts, each restarted one must withhold its vote, or another leader could be elected
   * under it (the votesAfterRestart bug).
   */
  private restartFollowers(): void {
    const leader = this.leader();
    if (leader?.core == null || leader.isPaused()) return;
    const voters = leader.core.status().membership.voters;
    const followers = voters
      .filter((id) => id !== leader.id)
      .map((id) => this.nodes.get(id))
      .filter((node): node is SimNode => node?.isUp() === true && !node.decommissioned);
    const freed = voters.length - Math.floor(voters.length / 2);
    const victims = shuffled(this.followersRestartRandom, followers).slice(0, freed);
    if (victims.length === 0) return;
    this.stats.crashes += victims.length;
    this.stats.restarts += victims.length;
    this.trace(`nemesis: restart ${victims.map((node) => node.id).join(", ")}, followers of ${leader.id}`);
    for (const node of victims) {
      this.crashNode(node);
      node.start();
    }
  }

  /** Pauses a running node (the leader three times in four) for one of pauseLengths. */
  private pauseNode(): void {
    const random = this.pauseRandom;
    const running = this.upNodes().filter((node) => !node.decommissioned && !node.isPaused());
    if (running.length === 0) return;
    const leader = this.leader();
    const victim =
      leader !== null && !leader.isPaused() && random.chance(0.75) ? leader : random.pick(running);
    const length = random.pick(pauseLengths);
    victim.pausedUntil = this.now + length;
    this.stats.pauses++;
    this.trace(`nemesis: pause ${victim.id} for ${length}`);
  }

  private partition(leader: SimNode | null): void {
    const random = this.faultRandom;
    const members = [...this.nodes.values()].filter((node) => !node.decommissioned).map((node) => node.id);
    if (members.length < 2) return;
    this.network.heal();
    this.stats.partitions++;
    const kind = random.pick(["isolate-leader", "split", "one-way", "bridge"] as const);
    const order = shuffled(random, members);
    if (kind === "isolate-leader" && leader !== null) {
      const rest = members.filter((id) => id !== leader.id);
      this.network.partition([[leader.id], rest]);
      this.trace(`nemesis: isolate leader ${leader.id} from ${rest.join(",")}`);
    } else if (kind === "one-way") {
      const target = leader?.id ?? random.pick(members);
      const inbound = random.chance(0.5);
      for (const other of members) {
        if (other === target) continue;
        if (inbound) this.network.block(other, target);
        else this.network.block(target, other);
      }
      this.trace(`nemesis: one-way partition, ${target} ${inbound ? "hears nobody" : "reaches nobody"}`);
    } else if (kind === "bridge" && order.length >= 3) {
      const [bridge, ...rest] = order;
      const half = Math.ceil(rest.length / 2);
      const left = rest.slice(0, half);
      const right = rest.slice(half);
      this.network.partition([left, right]);
      this.trace(`nemesis: bridge ${bridge} between ${left.join(",")} | ${right.join(",")}`);
    } else {
      const cut = 1 + random.nextInt(order.length - 1);
      const left = order.slice(0, cut);
      const right = order.slice(cut);
      this.network.partition([left, right]);
      this.trace(`nemesis: partition ${left.join(",")} | ${right.join(",")}`);
    }
  }

  private changeMembership(leader: SimNode | null): void {
    const core = leader?.core;
    if (leader === null || core == null || leader.isPaused()) return;
    const random = this.faultRandom;
    const membership = core.status().membership;
    const options: (() => void)[] = [];
    const propose = (change: Parameters<typeof core.proposeMembershipChange>[0]): void => {
      try {
        const position = core.proposeMembershipChange(change);
        this.stats.membershipChanges++;
        this.trace(`nemesis: propose ${change.kind} ${change.node} at ${position.index}`);
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
        this.trace(`nemesis: ${change.kind} ${change.node} refused: ${error.message}`);
      }
      leader.process();
    };
    const spare = this.spares[0];
    if (
      spare !== undefined &&
      membership.voters.length + membership.learners.length < this.options.voters + 2
    ) {
      options.push(() => {
        if (!this.nodes.has(spare)) this.addNode(spare, emptyState());
        if (this.nodes.get(spare)?.isUp() !== true) return;
        this.spares.shift();
        propose({ kind: "addLearner", node: spare });
      });
    }
    const learner = membership.learners[0];
    if (learner !== undefined) options.push(() => propose({ kind: "addVoter", node: learner }));
    if (membership.voters.length > this.options.voters) {
      options.push(() => propose({ kind: "removeNode", node: random.pick(membership.voters) }));
    }
    if (learner !== undefined) options.push(() => propose({ kind: "removeNode", node: learner }));
    if (options.length > 0) random.pick(options)();
  }

  private heal(): void {
    this.trace("heal: network calm, partitions healed, paused nodes resumed, crashed nodes restarted");
    this.phase = "healed";
    this.network.heal();
    this.network.conditions = calmNetwork;
    for (const node of this.nodes.values()) {
      if (node.isPaused()) node.resume(this.pauseRandom.chance(0.5));
      node.crashAfterPersists = 0;
      if (!node.isUp() && !node.decommissioned) node.start();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  private runClients(): void {
    const random = this.clientRandom;
    for (let client = 0; client < clientCount; client++) {
      if (this.clientBusy.has(client) || !random.chance(0.06)) continue;
      const key = random.pick(keys);
      const roll = random.nextInt(10);
      let input: RegisterInput;
      if (roll < 4) input = { kind: "put", key, value: `v${this.nextOperation}` };
      else if (roll < 8) input = { kind: "get", key };
      else
        input = {
          kind: "cas",
          key,
          expected: this.lastSeen.get(key) ?? null,
          value: `v${this.nextOperation}`,
        };
      this.invoke(client, input);
    }
  }

  private invoke(client: number, input: RegisterInput): number | null {
    const random = this.clientRandom;
    const hint = this.leaderHint.get(client);
    // A removed node is no longer behind the clients' address list.
    const candidates = this.upNodes().filter((node) => !node.decommissioned && !node.leftRunning);
    const hinted = hint === undefined ? undefined : this.nodes.get(hint);
    // Clients mostly follow their leader hint, but sometimes try any node (as a load balancer would).
    const useHint =
      hinted?.isUp() === true && !hinted.decommissioned && !hinted.leftRunning && random.chance(0.8);
    const node = useHint ? hinted : candidates.length > 0 ? random.pick(candidates) : undefined;
    if (node === undefined || node.core === null) return null;
    const id = this.nextOperation++;
    const operation: PendingOperation = {
      id,
      client,
      input,
      call: ++this.historyClock,
      deadline: this.now + operationTimeout,
      node: node.id,
    };
    if (node.isPaused()) {
      // The call waits on the paused node's socket: invoked now, made when the node resumes.
      this.pending.set(id, operation);
      this.clientBusy.add(client);
      this.trace(`client ${client} invokes #${id} ${describeInput(input)} at ${node.id} (paused: it waits)`);
      node.holdCall(id, () => {
        const refusal = this.callCore(node, id, input);
        if (refusal !== null) {
          // Refused, so it never happened: no outcome to record.
          this.finish(operation);
          this.noteRefusal(client, refusal);
          this.trace(`#${id} refused by ${node.id} after its pause: ${refusal.message}`);
          return;
        }
        node.process();
      });
      return id;
    }
    const refusal = this.callCore(node, id, input);
    if (refusal !== null) {
      this.noteRefusal(client, refusal);
      return null;
    }
    this.pending.set(id, operation);
    this.clientBusy.add(client);
    this.trace(`client ${client} invokes #${id} ${describeInput(input)} at ${node.id}`);
    node.process();
    return id;
  }

  /** Hands the operation to the node's core; a refusal (not the leader, a full queue) is returned. */
  private callCore(node: SimNode, id: number, input: RegisterInput): RaftError | null {
    const core = node.core;
    if (core === null) throw new Error(`${node.id} is down`);
    try {
      if (input.kind === "get") {
        const context = `read-${id}`;
        core.readIndex(context);
        node.trackRead(context, id, input.key);
      } else {
        const position = core.propose(encodeCommand({ operation: id, input }));
        node.trackProposal(position.index, position.term, id);
      }
      return null;
    } catch (error) {
      if (error instanceof RaftError) return error;
      throw error;
    }
  }

  /** A client told where the leader is follows the hint next time. */
  private noteRefusal(client: number, refusal: RaftError): void {
    if (!(refusal instanceof NotLeaderError)) return;
    if (refusal.leaderHint === null) this.leaderHint.delete(client);
    else this.leaderHint.set(client, refusal.leaderHint);
  }

  private writeDone(id: number, result: boolean | null | "failed"): void {
    const operation = this.pending.get(id);
    if (operation === undefined) return;
    this.finish(operation);
    if (result === "failed") {
      this.trace(`#${id} failed: its entry was replaced`);
      return;
    }
    const output = operation.input.kind === "cas" ? result === true : null;
    this.history.push({
      id,
      client: operation.client,
      input: operation.input,
      output,
      call: operation.call,
      return: ++this.historyClock,
    });
    this.stats.writesOk++;
    if (operation.input.kind !== "get" && (operation.input.kind === "put" || output === true)) {
      this.lastSeen.set(operation.input.key, operation.input.value);
    }
    this.trace(`#${id} ok → ${JSON.stringify(output)}`);
    if (this.finalWrite?.operation === id)
      this.finalWrite.index = this.nodes.get(operation.node)?.kv.applied ?? null;
  }

  private readDone(id: number, value: string | null): void {
    const operation = this.pending.get(id);
    if (operation === undefined) return;
    this.finish(operation);
    this.history.push({
      id,
      client: operation.client,
      input: operation.input,
      output: value,
      call: operation.call,
      return: ++this.historyClock,
    });
    this.stats.readsOk++;
    this.lastSeen.set(operation.input.key, value);
    this.trace(`#${id} ok → ${JSON.stringify(value)}`);
  }

  private giveUp(id: number, why: string): void {
    const operation = this.pending.get(id);
    if (operation === undefined) return;
    this.finish(operation);
    this.nodes.get(operation.node)?.forget(id);
    this.leaderHint.delete(operation.client);
    this.stats.unknownOutcomes++;
    this.trace(`#${id} outcome unknown: ${why}`);
    // A read with an unknown outcome changed nothing; a write may or may not have happened.
    if (operation.input.kind !== "get") {
      this.history.push({
        id,
        client: operation.client,
        input: operation.input,
        output: undefined,
        call: operation.call,
        return: Infinity,
      });
    }
  }

  private finish(operation: PendingOperation): void {
    this.pending.delete(operation.id);
    this.clientBusy.delete(operation.client);
  }

  private expireAll(): void {
    for (const id of [...this.pending.keys()]) this.giveUp(id, "simulation ended");
  }

  // -------------------------------------------------------------------------------------------
  // End-of-run checks

  /** After healing, a leader must emerge and a write must commit and reach every member in bounded time. */
  private checkLiveness(): void {
    const deadline = this.now + livenessTimeMax;
    const finalClient = clientCount;
    for (; this.now < deadline; this.now++) {
      this.advanceTime();
      if (
        this.finalWrite === null ||
        (!this.pending.has(this.finalWrite.operation) && this.finalWrite.index === null)
      ) {
        if (this.now % tickInterval === 0) {
          const operation = this.invoke(finalClient, {
            kind: "put",
            key: "final",
            value: `final-${this.options.seed}`,
          });
          if (operation !== null) this.finalWrite = { operation, index: null };
        }
        continue;
      }
      const index = this.finalWrite.index;
      if (index === null) continue;
      const leader = this.leader();
      const core = leader?.core;
      if (leader === null || core == null) continue;
      const members = this.memberNodes(core.status());
      if (members.every((node) => node.isUp() && node.kv.applied >= index) && this.removedNodesKnow()) {
        this.trace(
          `liveness: final write applied at ${index} on ${members.map((node) => node.id).join(",")}`,
        );
        return;
      }
    }
    const leader = this.leader();
    throw new SafetyViolation(
      "liveness",
      `${livenessTimeMax} time units after healing, ${
        leader === null
          ? "no leader was elected"
          : this.finalWrite?.index == null
            ? `leader ${leader.id} did not commit a write`
            : this.removedNodesKnow()
              ? "not every member applied the final write"
              : "a removed node left running did not learn that it was removed"
      }`,
    );
  }

  /**
   * Every removed node left running knows it was removed, if it would ever ask: a node that still
   * sees itself as a voter campaigns and is answered. (A learner never sends first: one removed
   * while cut off is not told. docs/operations.md says so.)
   */
  private removedNodesKnow(): boolean {
    for (const node of this.nodes.values()) {
      const core = node.core;
      if (!node.leftRunning || core == null || core.isRemoved()) continue;
      if (core.status().membership.voters.includes(node.id)) return false;
    }
    return true;
  }

  private memberNodes(status: RaftStatus): SimNode[] {
    const ids = [...status.membership.voters, ...status.membership.learners];
    return ids
      .map((id) => this.nodes.get(id))
      .filter((node): node is SimNode => node !== undefined && !node.decommissioned);
  }

  private checkHistory(): void {
    const checkOptions: CheckOptions = { stepsMax: this.options.checkerStepsMax ?? 2_000_000 };
    const verdict = checkLinearizability(registerModel, this.history, checkOptions);
    this.stats.linearizability = verdict.result;
    if (verdict.result === "not-linearizable") {
      const lines = verdict.operations
        .map((operation) => `  ${registerModel.describe(operation)}`)
        .join("\n");
      throw new SafetyViolation(
        "linearizability",
        `key ${verdict.partition} has no linearization:\n${lines}`,
      );
    }
    if (verdict.result === "unknown") this.trace(`linearizability unknown: ${verdict.reason}`);
  }
}

function describeInput(input: RegisterInput): string {
  switch (input.kind) {
    case "put":
      return `put(${input.key}, ${input.value})`;
    case "get":
      return `get(${input.key})`;
    case "cas":
      return `cas(${input.key}, ${JSON.stringify(input.expected)} → ${input.value})`;
  }
}
