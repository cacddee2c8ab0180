// RaftNode over SegmentLogStores (the nodes' Raft log) on a real disk: a cluster whose nodes all stop and start again from
// their data directories keeps every acknowledged write and elects a leader again; nodes whose
// state machine kept what it applied restart without loading those entries, and still serve them.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import type { Entry, PersistentState } from "../../raft/core/index.js";
import {
  collectParts,
  InProcessNetwork,
  RaftNode,
  type SnapshotToRestore,
  type StateMachine,
} from "../../raft/node/index.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-raft-node-disk-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

class ListMachine implements StateMachine<void> {
  values: string[] = [];
  private applied = 0;
  apply(entry: Entry): void {
    this.applied = entry.index;
    if (entry.type === "normal" && entry.data.length > 0)
      this.values.push(new TextDecoder().decode(entry.data));
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(this.values));
  }
  async restore(snapshot: SnapshotToRestore): Promise<void> {
    this.values = JSON.parse(new TextDecoder().decode(await collectParts(snapshot.read()))) as string[];
    this.applied = snapshot.meta.index;
  }
  appliedIndex(): number {
    return this.applied;
  }
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function startCluster(ids: string[], network: InProcessNetwork, bootstrap: boolean) {
  return Promise.all(
    ids.map(async (id) => {
      const machine = new ListMachine();
      const node = await RaftNode.start<void>({
        id,
        logStore: await SegmentLogStore.open(join(root, id)),
        transport: network.connect(id),
        stateMachine: machine,
        tickMs: 10,
        snapshotEveryEntries: 8,
        retainEntries: 2,
        ...(bootstrap ? { bootstrap: { voters: ids, learners: [] } } : {}),
      });
      return { node, machine };
    }),
  );
}

it("a whole cluster restarted from its LevelDB directories keeps every acknowledged write", {
  timeout: 60_000,
}, async () => {
  const ids = ["n1", "n2", "n3"];
  let members = await startCluster(ids, new InProcessNetwork(), true);
  let leader = members[0]?.node as RaftNode<void>;
  await waitFor("a leader", () => members.some((m) => m.node.status().role === "leader"));
  leader = members.find((m) => m.node.status().role === "leader")?.node ?? leader;
  const written = Array.from({ length: 20 }, (_, i) => `v${i}`);
  for (const value of written) await leader.propose(new TextEncoder().encode(value));
  await Promise.all(members.map((m) => m.node.stop()));

  // Every node restarts from disk alone: in-memory state machines start empty.
  members = await startCluster(ids, new InProcessNetwork(), false);
  await waitFor("a leader after the restart", () => members.some((m) => m.node.status().role === "leader"));
  leader = members.find((m) => m.node.status().role === "leader")?.node ?? leader;
  await leader.propose(new TextEncoder().encode("after"));
  await waitFor("every node to apply everything", () =>
    members.every((m) => m.machine.values.join() === [...written, "after"].join()),
  );
  expect(members.every((m) => m.node.status().firstIndex > 1)).toBe(true);
  await Promise.all(members.map((m) => m.node.stop()));
});

it("nodes restarted with their applied entries left on disk replay the membership from them and send them to a follower that lags", {
  timeout: 60_000,
}, async () => {
  const ids = ["m1", "m2", "m3"];
  const network = new InProcessNetwork();
  const machines = new Map(ids.map((id) => [id, new ListMachine()]));
  const loaded = new Map<string, PersistentState>();
  const nodes = new Map<string, RaftNode<void>>();
  // The machines are kept across restarts, as a state machine on disk is: what they applied
  // before is what the stores may leave on disk.
  const start = async (id: string, bootstrap: boolean) => {
    const store = await SegmentLogStore.open(join(root, id));
    const load = store.load.bind(store);
    store.load = async (options) => {
      const state = await load(options);
      loaded.set(id, state);
      return state;
    };
    const node = await RaftNode.start<void>({
      id,
      logStore: store,
      transport: network.connect(id),
      stateMachine: machines.get(id) as ListMachine,
      tickMs: 10,
      snapshotEveryEntries: 1_000_000,
      ...(bootstrap ? { bootstrap: { voters: ids, learners: [] } } : {}),
    });
    nodes.set(id, node);
  };
  const leader = async () => {
    let found: RaftNode<void> | undefined;
    await waitFor("a leader", () => {
      found = [...nodes.values()].find((node) => !node.isStopped() && node.status().role === "leader");
      return found !== undefined;
    });
    return found as RaftNode<void>;
  };
  const value = (i: number) => `w${i}-${"x".repeat(200)}`;
  for (const id of ids) await start(id, true);
  for (let i = 0; i < 10; i++) await (await leader()).propose(new TextEncoder().encode(value(i)));
  // One follower stops and misses the next 20 writes.
  const first = await leader();
  const behind = ids.find((id) => id !== first.id) as string;
  await nodes.get(behind)?.stop();
  for (let i = 10; i < 30; i++) await (await leader()).propose(new TextEncoder().encode(value(i)));
  const others = ids.filter((id) => id !== behind);
  await waitFor("both to apply the 30 writes", () =>
    others.every((id) => machines.get(id)?.values.length === 30),
  );
  for (const id of others) await nodes.get(id)?.stop();
  // The two restart with every entry they applied left on disk, config entries included.
  for (const id of others) await start(id, false);
  for (const id of others) {
    const state = loaded.get(id);
    expect(state?.notLoaded?.terms.length).toBe(machines.get(id)?.appliedIndex());
    expect(state?.entries).toEqual([]);
  }
  // They know the members from entries they did not load, so they elect a leader; that leader
  // sends the follower that was down the 20 entries it missed, read back from its files.
  await leader();
  expect(nodes.get(others[0] as string)?.status().membership.voters).toEqual(ids);
  await start(behind, false);
  await (await leader()).propose(new TextEncoder().encode(value(30)));
  const all = Array.from({ length: 31 }, (_, i) => value(i));
  await waitFor("every node to apply every write", () =>
    ids.every((id) => machines.get(id)?.values.join() === all.join()),
  );
  for (const node of nodes.values()) await node.stop();
});
