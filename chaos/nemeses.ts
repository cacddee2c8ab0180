// The nemeses: each fault of an experiment injected into the running cluster, on targets the seed
// chooses (or the leader), and the heal that undoes it. A fault with no target (no leader at that
// moment) is skipped and said so. What each nemesis does is listed in chaos/experiment.ts.

import { execFileSync } from "node:child_process";
import { readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { SeededRandom } from "../raft/core/index.js";
import { type RaftFailpoint, raftFailpoints } from "../raft/node/index.js";
import { type Experiment, leaderLosingNemeses, type NemesisName } from "./experiment.js";
import type { NetnsNetwork } from "./netns-network.js";
import type { Partitions } from "./partitions.js";
import type { NodeEntry, ProcessCluster } from "./process-cluster.js";

export type Fault = Experiment["faults"][number];

export interface FaultContext {
  readonly cluster: ProcessCluster;
  /** The netns driver's network; null with the process driver. */
  readonly network: NetnsNetwork | null;
  /** One-way partitions on loopback (the process driver's). */
  readonly partitions: Partitions;
  readonly random: SeededRandom;
  readonly say: (line: string) => void;
}

export interface InjectedFault {
  /** The nodes it hit ("n1", "n1+n3", "all"). */
  readonly target: string;
  /** What the fault did, for the event line ("crash at after-persist"). */
  readonly detail: string;
  /** Whether it took the leader away while a quorum remained: failover is measured after it. */
  readonly takesLeader: boolean;
  /** Undoes the fault; resolves with what it did, for the event line. */
  heal(): Promise<string>;
}

export async function injectFault(fault: Fault, context: FaultContext): Promise<InjectedFault | null> {
  const { cluster, random } = context;
  const nemesis: NemesisName = fault.nemesis;
  const running = () => cluster.running();

  if (nemesis === "rolling-restart") {
    for (const node of cluster.nodes) {
      context.say(`rolling restart: stopping ${node.id} (SIGTERM)`);
      await cluster.terminate(node);
      await cluster.restart(node);
      context.say(`rolling restart: ${node.id} back, unsealed`);
    }
    return {
      target: "all",
      detail: "every node restarted in turn",
      takesLeader: false,
      heal: async () => "nothing left to heal",
    };
  }
  if (nemesis === "kill-minority" || nemesis === "kill-majority") {
    const size = cluster.nodes.length;
    const count = nemesis === "kill-minority" ? Math.floor((size - 1) / 2) : Math.floor(size / 2) + 1;
    const leader = await cluster.leader();
    const victims = shuffled(running(), random).slice(0, count);
    for (const node of victims) cluster.kill(node);
    return {
      target: ids(victims),
      detail: `SIGKILL ${victims.length} of ${size}`,
      // Without a quorum there is nothing to fail over to until the heal.
      takesLeader: nemesis === "kill-minority" && leader !== null && victims.includes(leader),
      heal: async () => {
        await Promise.all(victims.map((node) => cluster.restart(node)));
        return "restarted and unsealed";
      },
    };
  }
  if (nemesis === "partition-majority-minority") {
    const network = requireNetwork(context, nemesis);
    const indexes = shuffled(
      cluster.nodes.map((node) => node.index),
      random,
    );
    const minority = indexes.slice(0, Math.floor((indexes.length - 1) / 2));
    const majority = indexes.slice(minority.length);
    const leader = await cluster.leader();
    await network.partition([minority, majority]);
    const names = (group: number[]) => group.map((index) => cluster.nodes[index]?.id).join("+");
    return {
      target: names(minority),
      detail: `${names(minority)} | ${names(majority)}`,
      takesLeader: leader !== null && minority.includes(leader.index),
      heal: async () => {
        await network.heal();
        return "partition removed";
      },
    };
  }

  if (nemesis === "hsm-outage") return await hsmOutage(context);
  if (nemesis === "hsm-hang") return await hsmHang(context);
  if (nemesis === "replace-member") return await replaceMember(context);

  // "-leader" nemeses hit the leader ("partition-leader-inbound" too), "-follower" ones a node the
  // seed picks among the others, the rest a node the seed picks.
  if (nemesis === "partition-bridge") {
    const network = requireNetwork(context, nemesis);
    const [middle = 0, ...others] = shuffled(
      cluster.nodes.map((node) => node.index),
      random,
    );
    const left = others.slice(0, Math.floor(others.length / 2));
    const right = others.slice(left.length);
    await network.partitionWithBridge(left, middle, right);
    const names = (group: readonly number[]) => group.map((index) => cluster.nodes[index]?.id).join("+");
    return {
      target: names([middle]),
      detail: `${names(left)} | ${names([middle])} | ${names(right)}`,
      // The leader may stay (if it is the middle node or keeps a majority through it) or move.
      takesLeader: false,
      heal: async () => {
        await network.heal();
        return "bridge removed";
      },
    };
  }

  const target = nemesis.includes("-leader")
    ? await cluster.leader()
    : nemesis.includes("-follower")
      ? await cluster.leader().then((leader) =>
          pickOrNull(
            running().filter((node) => node !== leader),
            random,
          ),
        )
      : pickOrNull(running(), random);
  if (target === null) return null;
  const single = (detail: string, heal: () => Promise<string> | string): InjectedFault => ({
    target: target.id,
    detail,
    takesLeader: leaderLosingNemeses.has(nemesis),
    heal: async () => await heal(),
  });
  switch (nemesis) {
    case "kill-leader":
    case "kill-random":
      cluster.kill(target);
      return single("SIGKILL", async () => {
        await cluster.restart(target);
        return "restarted and unsealed";
      });
    case "seal-leader":
    case "seal-random":
      await cluster.seal(target);
      return single("sealed (Sys.Seal)", async () => {
        await cluster.unseal(target);
        return "unsealed with the share";
      });
    case "pause-leader":
    case "pause-random":
      cluster.pause(target);
      return single("SIGSTOP", () => {
        cluster.resume(target);
        return "resumed";
      });
    case "partition-leader-inbound":
    case "partition-random-inbound":
    case "partition-follower-inbound":
      if (context.network !== null) await context.network.cutInbound(target.index);
      else await context.partitions.cutInbound(target.host, cluster.peerPort);
      return single("hears no other node", async () => {
        if (context.network !== null) await context.network.heal();
        else await context.partitions.heal();
        return "partition removed";
      });
    case "partition-leader": {
      const network = requireNetwork(context, nemesis);
      const others = cluster.nodes.filter((node) => node !== target).map((node) => node.index);
      await network.partition([[target.index], others]);
      return single("cut off from every other node", async () => {
        await network.heal();
        return "partition removed";
      });
    }
    case "loss-leader":
    case "loss-random": {
      const network = requireNetwork(context, nemesis);
      const percent = fault.percent ?? 10;
      await network.lossy(target.index, percent);
      return single(`${percent}% of packets lost on its links`, async () => {
        await network.heal();
        return "loss removed";
      });
    }
    case "latency-leader":
    case "latency-random": {
      const network = requireNetwork(context, nemesis);
      const delayMs = fault.delayMs ?? 100;
      network.slowNode(target.index, delayMs);
      return single(`+${delayMs} ms each way on its links`, async () => {
        await network.heal();
        return "latency removed";
      });
    }
    case "clock-skew-leader":
    case "clock-skew-random": {
      const skewMs = fault.skewMs ?? 30_000;
      cluster.skewClock(target, skewMs);
      return single(`wall clock ${skewMs >= 0 ? "+" : ""}${skewMs} ms`, () => {
        cluster.skewClock(target, 0);
        return "clock set right";
      });
    }
    case "disk-stall-leader":
    case "disk-stall-random": {
      const stallMs = fault.stallMs ?? 500;
      await cluster.armFailpoints(target, { "before-persist": { sleepMs: stallMs } });
      return single(`every log write ${stallMs} ms slower`, async () => {
        await cluster.armFailpoints(target, {});
        return "disk fast again";
      });
    }
    case "disk-full-leader":
    case "disk-full-random": {
      const filler = cluster.fillDisk(target);
      return single("its data disk filled", async () => {
        // A node stops when a write to its state or log fails (it cannot go on without them); one
        // whose audit alone could not write refuses calls (a leader hands its leadership over).
        const stopped = await cluster.exited(target, 0);
        rmSync(filler, { force: true });
        if (!stopped) return "stayed up while full (its audit refusing calls); room again";
        cluster.forget(target);
        await cluster.restart(target);
        return "stopped on the full disk; room again, restarted and unsealed";
      });
    }
    case "crash-point-leader":
    case "crash-point-random": {
      // Drawn among the points every Ready passes; a snapshot install only when asked for (it
      // needs the log compacted past the node: crashDuringSnapshotInstall).
      const point: RaftFailpoint =
        fault.point ?? random.pick(raftFailpoints.filter((name) => name !== "during-snapshot-install"));
      if (point === "during-snapshot-install")
        return await crashDuringSnapshotInstall(target, fault, context);
      await cluster.armFailpoints(target, { [point]: "crash" });
      return single(`crash at ${point}`, async () => {
        // The point is hit by the next Ready that reaches it; one that never came (no snapshot to
        // install) is disarmed and said so.
        const died = await cluster.exited(target, 0);
        if (died) cluster.forget(target);
        await cluster.armFailpoints(target, {});
        if (!died) return `crash point ${point} not reached; disarmed`;
        await cluster.restart(target);
        return `died at ${point}; restarted and unsealed`;
      });
    }
    default:
      throw new Error(`no nemesis ${nemesis}`);
  }
}

/**
 * A snapshot is installed only on a node that fell behind the leader's compacted log: the node is
 * killed and left down while the others write on, at least half of the fault and until the
 * leader's log starts past the node's (within the fault's time), then started again with the point
 * armed; it dies when the leader's snapshot arrives, and is restarted disarmed at the heal.
 */
async function crashDuringSnapshotInstall(
  target: NodeEntry,
  fault: Fault,
  context: FaultContext,
): Promise<InjectedFault> {
  const { cluster } = context;
  // Where the node's log ends, about: its commit index, and the few entries it may hold beyond.
  const logEnd = (await cluster.commitIndexOf(target).catch(() => 0)) + inFlightEntriesMax;
  cluster.kill(target);
  await sleep(fault.healAfterMs / 2);
  await cluster.compactedPast(logEnd, fault.healAfterMs / 4);
  await cluster.armFailpoints(target, { "during-snapshot-install": "crash" });
  await cluster.launch(target);
  return {
    target: target.id,
    detail: "down, then restarted to crash during-snapshot-install",
    takesLeader: leaderLosingNemeses.has(fault.nemesis),
    heal: async () => {
      // A node started slowly under load may still be receiving the snapshot: wait a moment.
      const died = await cluster.exited(target, snapshotArrivalWaitMs);
      if (died) cluster.forget(target);
      else cluster.kill(target);
      await cluster.armFailpoints(target, {});
      await cluster.restart(target);
      return died
        ? "died at during-snapshot-install; restarted and unsealed"
        : "crash point during-snapshot-install not reached (no snapshot was sent); restarted";
    },
  };
}

/** The cluster's SoftHSM token and the running node an HSM nemesis restarts (null: none runs). */
function hsmAndTarget(
  context: FaultContext,
  nemesis: NemesisName,
): { hsm: NonNullable<ProcessCluster["hsm"]>; target: NodeEntry } | null {
  const hsm = context.cluster.hsm;
  if (hsm === null) throw new Error(`${nemesis} needs cluster.seal: hsm`);
  const target = pickOrNull(context.cluster.running(), context.random);
  return target === null ? null : { hsm, target };
}

/** The HSM away while a node restarts: it must stay sealed, then unseal itself once it is back. */
async function hsmOutage(context: FaultContext): Promise<InjectedFault | null> {
  const picked = hsmAndTarget(context, "hsm-outage");
  if (picked === null) return null;
  const { cluster } = context;
  const { hsm, target } = picked;
  const away = `${hsm.tokenDirectory}.away`;
  renameSync(hsm.tokenDirectory, away);
  cluster.kill(target);
  await cluster.launch(target);
  return {
    target: target.id,
    detail: "HSM token gone; the node restarted",
    takesLeader: false,
    heal: async () => {
      const sealedWithoutHsm = await cluster.sealed(target);
      renameSync(away, hsm.tokenDirectory);
      const back = performance.now();
      await cluster.unseal(target, 60_000);
      return `${sealedWithoutHsm ? "stayed sealed without the HSM" : "UNSEALED WITHOUT THE HSM"}; HSM back, unsealed itself ${Math.round(performance.now() - back)} ms later`;
    },
  };
}

/**
 * The HSM hangs while a node restarts: the token's file becomes a FIFO, so a module that
 * initializes from now on blocks in open() (as a call into a network HSM that stops answering).
 * The restarted node must serve meanwhile (it answers its health endpoint and Cluster.Status,
 * sealed, naming the call that did not answer), then unseal itself once the HSM answers again.
 */
async function hsmHang(context: FaultContext): Promise<InjectedFault | null> {
  const picked = hsmAndTarget(context, "hsm-hang");
  if (picked === null) return null;
  const { cluster } = context;
  const { hsm, target } = picked;
  const [tokenFolder] = readdirSync(hsm.tokenDirectory);
  if (tokenFolder === undefined) throw new Error(`no SoftHSM token under ${hsm.tokenDirectory}`);
  const tokenFile = join(hsm.tokenDirectory, tokenFolder, "token.object");
  const keptFile = `${hsm.tokenDirectory}.token.object`;
  renameSync(tokenFile, keptFile);
  execFileSync("mkfifo", [tokenFile]);
  cluster.kill(target);
  const launched = performance.now();
  // Returns once the node answers its health endpoint: a node whose HSM call blocked its event
  // loop never would.
  await cluster.launch(target);
  const answeredMs = Math.round(performance.now() - launched);
  return {
    target: target.id,
    detail: `HSM hung; the node restarted and answered in ${answeredMs} ms`,
    takesLeader: false,
    heal: async () => {
      const sealedWhileHung = await cluster.sealed(target);
      const reason = await cluster.hsmLastError(target);
      rmSync(tokenFile);
      renameSync(keptFile, tokenFile);
      const back = performance.now();
      await cluster.unseal(target, 60_000);
      const named = /did not answer within/.test(reason)
        ? "naming the call that did not answer"
        : `saying "${reason}"`;
      return `${sealedWhileHung ? `served, sealed, ${named}` : "DID NOT ANSWER, OR UNSEALED, WHILE THE HSM HUNG"}; HSM answering, unsealed itself ${Math.round(performance.now() - back)} ms later`;
    },
  };
}

/**
 * A membership change under load (and whatever other faults the experiment runs meanwhile): a
 * follower removed and stopped; at the heal a new node added as a learner, started, caught up and
 * promoted - the operator's procedure (docs/operations.md).
 */
async function replaceMember(context: FaultContext): Promise<InjectedFault | null> {
  const { cluster } = context;
  const leader = await cluster.leader();
  const followers = cluster.running().filter((node) => node !== leader);
  const target = pickOrNull(followers, context.random);
  if (target === null) return null;
  const started = performance.now();
  await cluster.changeMembership(
    (client) => client.cluster.removeMember({ nodeId: target.id }),
    (members) => !members.some((member) => member.nodeId === target.id),
  );
  const removedMs = performance.now() - started;
  // Stopped as an operator would (SIGTERM: calls in flight may finish).
  await cluster.terminate(target);
  cluster.retire(target);
  return {
    target: target.id,
    detail: `${target.id} removed in ${Math.round(removedMs)} ms and stopped in ${Math.round(performance.now() - started - removedMs)} ms`,
    takesLeader: false,
    heal: async () => {
      const joiner = await cluster.addLearner(target);
      await cluster.unseal(joiner);
      const caughtUpMs = await cluster.catchUp(joiner, 30_000);
      await cluster.changeMembership(
        (client) => client.cluster.promoteLearner({ nodeId: joiner.id }),
        (members) => members.some((member) => member.nodeId === joiner.id && member.voter),
      );
      return `${joiner.id} joined as a learner, caught up in ${Math.round(caughtUpMs)} ms, promoted to voter`;
    },
  };
}

/** Entries a node may hold past its commit index (appended, not yet known committed). */
const inFlightEntriesMax = 16;
/** How long the heal of a snapshot-install crash waits for the crash it armed. */
const snapshotArrivalWaitMs = 3000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function requireNetwork(context: FaultContext, nemesis: NemesisName): NetnsNetwork {
  if (context.network === null) throw new Error(`${nemesis} needs cluster.driver: netns`);
  return context.network;
}

function pickOrNull(nodes: readonly NodeEntry[], random: SeededRandom): NodeEntry | null {
  return nodes.length === 0 ? null : random.pick(nodes);
}

function shuffled<T>(items: readonly T[], random: SeededRandom): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

function ids(nodes: readonly NodeEntry[]): string {
  return nodes.map((node) => node.id).join("+");
}
