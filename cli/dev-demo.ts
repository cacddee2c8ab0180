// `strongroom demo`: a three-node Raft cluster in
// this process, on real timers with an in-process network, narrating what happens: an election,
// replicated writes, linearizable reads from every node, a leader cut off and a measured failover,
// and the old leader catching up after the partition heals. It stores no secrets and opens no ports.

import type { Entry } from "../raft/core/index.js";
import {
  collectParts,
  InProcessNetwork,
  MemoryLogStore,
  RaftNode,
  type SnapshotToRestore,
  type StateMachine,
} from "../raft/node/index.js";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A key-value map of "key=value" writes, in memory. */
class DemoMachine implements StateMachine<void> {
  readonly values = new Map<string, string>();
  private applied = 0;
  apply(entry: Entry): void {
    this.applied = entry.index;
    if (entry.type !== "normal" || entry.data.length === 0) return;
    const [key, value] = decoder.decode(entry.data).split("=", 2);
    if (key !== undefined && value !== undefined) this.values.set(key, value);
  }
  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.values]));
  }
  async restore(snapshot: SnapshotToRestore): Promise<void> {
    const data = await collectParts(snapshot.read());
    this.values.clear();
    for (const [key, value] of JSON.parse(decoder.decode(data)) as [string, string][])
      this.values.set(key, value);
    this.applied = snapshot.meta.index;
  }
  appliedIndex(): number {
    return this.applied;
  }
}

export interface DemoOptions {
  readonly nodes: number;
  readonly tickMs: number;
  readonly print: (line: string) => void;
}

export async function runDevDemo(options: DemoOptions): Promise<void> {
  const { print } = options;
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(3).padStart(7)}s`;
  const say = (line: string) => print(`${elapsed()}  ${line}`);
  const network = new InProcessNetwork();
  const ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
  const machines = new Map<string, DemoMachine>();
  const nodes: RaftNode<void>[] = [];
  say(
    `starting ${ids.length} nodes (${ids.join(", ")}), tick ${options.tickMs} ms, election timeout ${10 * options.tickMs}-${20 * options.tickMs} ms`,
  );
  for (const id of ids) {
    const machine = new DemoMachine();
    machines.set(id, machine);
    nodes.push(
      await RaftNode.start<void>({
        id,
        logStore: new MemoryLogStore(),
        transport: network.connect(id),
        stateMachine: machine,
        tickMs: options.tickMs,
        bootstrap: { voters: ids, learners: [] },
        onSoftState: (state) => {
          if (state.role === "leader") say(`${id} is leader of term ${state.term}`);
          else if (state.role !== "follower")
            say(
              `${id} is ${state.role} for term ${state.role === "preCandidate" ? state.term + 1 : state.term}`,
            );
        },
      }),
    );
  }
  try {
    const leaderOf = async (excluded: string | null): Promise<RaftNode<void>> => {
      for (;;) {
        const leader = nodes.find((node) => node.id !== excluded && node.status().role === "leader");
        if (leader !== undefined) return leader;
        await new Promise((resolve) => setTimeout(resolve, options.tickMs / 4));
      }
    };
    let leader = await leaderOf(null);
    for (let i = 1; i <= 3; i++) {
      const { index } = await leader.propose(encoder.encode(`config/version=${i}`));
      say(`write config/version=${i} committed at index ${index}`);
    }
    for (const node of nodes) {
      const index = await node.readIndex();
      say(
        `linearizable read on ${node.id} (through the leader, at index ${index}): config/version=${machines.get(node.id)?.values.get("config/version")}`,
      );
    }
    const old = leader;
    say(`cutting ${old.id} off from the others`);
    const cutAt = performance.now();
    network.isolate(old.id);
    leader = await leaderOf(old.id);
    const failoverMs = performance.now() - cutAt;
    say(`failover: ${leader.id} leads after ${failoverMs.toFixed(0)} ms`);
    const { index } = await leader.propose(encoder.encode("config/version=4"));
    say(`write config/version=4 committed at index ${index} without ${old.id}`);
    say(
      `${old.id} still thinks it is ${old.status().role}; its reads cannot be confirmed by a quorum, so it serves none`,
    );
    network.heal();
    say("partition healed");
    const oldMachine = machines.get(old.id);
    while (oldMachine?.values.get("config/version") !== "4")
      await new Promise((resolve) => setTimeout(resolve, options.tickMs / 4));
    say(
      `${old.id} is a follower of ${old.status().leader} again and has config/version=4 (commit ${old.status().commit})`,
    );
    say(`done: ${network.delivered} messages delivered, ${network.dropped} dropped by the partition`);
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
  }
}
