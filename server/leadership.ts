// Handing leadership over before this node stops leading on purpose (shutdown, an operator's
// seal): to the voter whose log is furthest along, so the cluster has a leader again at once
// instead of after an election timeout.

import type { RaftNode } from "../raft/node/index.js";

/** If this node leads, transfers leadership and waits up to `waitMs` for it to move. */
export async function handOverLeadership(raft: RaftNode<unknown>, waitMs: number): Promise<void> {
  const status = raft.status();
  if (status.role !== "leader") return;
  const target = [...status.progress.entries()]
    .filter(([id]) => id !== status.id && status.membership.voters.includes(id))
    .sort((a, b) => b[1].match - a[1].match)[0]?.[0];
  if (target === undefined) return;
  raft.transferLeadership(target);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline && raft.status().role === "leader") {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
