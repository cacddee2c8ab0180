// RaftNode over SegmentLogStores (the nodes' Raft log) on a real disk: a cluster whose nodes all stop and start again from
// their data directories keeps every acknowledged write and elects a leader again.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import type { Entry } from "../../raft/core/index.js";
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
