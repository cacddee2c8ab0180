// The storage path end to end: three RaftNodes, each on its own LevelDB Raft log and LevelDB
// secret state machine. The leader encrypts through the barrier and proposes commands; every node
// applies them; a follower that was down while the leader compacted its log comes back through
// InstallSnapshot of the state machine, from its data directories alone.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { InProcessNetwork, RaftNode } from "../../raft/node/index.js";
import { Barrier, Keyring } from "../../storage/barrier/index.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import {
  type ApplyResult,
  encodeCommand,
  RaftSecretStateMachine,
  SecretStateMachine,
} from "../../storage/state/index.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-replicated-secrets-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const barrier = new Barrier();
barrier.unseal(Keyring.create(0));
const ids = ["n1", "n2", "n3"];

async function waitFor(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function startNode(id: string, network: InProcessNetwork, bootstrap: boolean) {
  const secrets = await SecretStateMachine.open(join(root, id, "state"));
  const node = await RaftNode.start<ApplyResult | null>({
    id,
    logStore: await SegmentLogStore.open(join(root, id, "raft-log")),
    transport: network.connect(id),
    stateMachine: new RaftSecretStateMachine(secrets),
    tickMs: 10,
    snapshotEveryEntries: 10,
    retainEntries: 2,
    ...(bootstrap ? { bootstrap: { voters: ids, learners: [] } } : {}),
  });
  return { id, node, secrets };
}

async function readValue(
  member: { node: RaftNode<ApplyResult | null>; secrets: SecretStateMachine },
  path: string,
): Promise<string> {
  await member.node.readIndex();
  const found = await member.secrets.read(path, null, Date.now());
  return new TextDecoder().decode(barrier.decrypt(path, found.ciphertext));
}

it("replicates encrypted secrets, and a restarted follower catches up by state machine snapshot", {
  timeout: 60_000,
}, async () => {
  const network = new InProcessNetwork();
  const members = await Promise.all(ids.map((id) => startNode(id, network, true)));
  try {
    await waitFor("a leader", () => members.some((m) => m.node.status().role === "leader"));
    const leader = members.find((m) => m.node.status().role === "leader") as (typeof members)[number];
    const put = (path: string, value: string, cas: number | null = null) =>
      leader.node.propose(
        encodeCommand({
          op: "kv.put",
          path,
          ciphertext: barrier.encrypt(path, new TextEncoder().encode(value)),
          cas,
          at: Date.now(),
        }),
      );

    expect((await put("app/db", "first", 0)).result).toEqual({ ok: true, version: 1 });
    expect((await put("app/db", "conflict", 0)).result).toMatchObject({ ok: false, code: "CAS_MISMATCH" });
    for (const member of members) expect(await readValue(member, "app/db")).toBe("first");

    const follower = members.find((m) => m !== leader) as (typeof members)[number];
    await follower.node.stop();
    await follower.secrets.close();
    for (let i = 0; i < 30; i++) await put(`app/s${i}`, `value-${i}`);
    // Snapshots are built beside the Ready loop: the compaction may land just after the last put.
    await waitFor("the leader to compact its log past index 20", () => leader.node.status().firstIndex > 20);
    expect(leader.node.status().firstIndex).toBeGreaterThan(20);

    const restarted = await startNode(follower.id, network, false);
    members[members.indexOf(follower)] = restarted;
    await waitFor(
      "the follower to catch up",
      async () => restarted.secrets.appliedIndex() >= leader.secrets.appliedIndex(),
    );
    expect(await readValue(restarted, "app/s29")).toBe("value-29");
    expect(await readValue(restarted, "app/db")).toBe("first");
    expect((await restarted.secrets.list("app/", null, 100)).paths).toHaveLength(31);
  } finally {
    for (const member of members) {
      await member.node.stop();
      await member.secrets.close();
    }
  }
});
