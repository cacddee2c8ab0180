// The strongroom nodes' settings a bench:vs-etcd run chose, as its report states them. They move
// the figures more than most code changes do (docs/performance.md, sixty-ninth session: with the
// SDK's routing, 0.73-0.90x etcd's writes at 64 clients with the defaults, 0.91-1.03x with read
// leases and the audit handed to the OS), so results.json and results.md must say which were on:
// until that session results.json did not record the audit's durability at all.

import type { AuditDurability } from "../../server/audit/audit-file.js";

export interface ServerSettings {
  /** audit.durability: "disk" (the default) or "os". */
  readonly auditDurability: AuditDurability;
  /** raft.leaseReads. */
  readonly leaseReads: boolean;
  /** Whether strongroom's writes carried a request id each, as the SDK's do. */
  readonly requestIds: boolean;
  /** Node/V8 flags the nodes ran with, and the Node version that ran them. */
  readonly nodeOptions: readonly string[];
  readonly serverNodeVersion: string;
}

/** One sentence for results.md's header: each setting, and what the default one means. */
export function describeServerSettings(settings: ServerSettings): string {
  const audit =
    settings.auditDurability === "disk"
      ? "audit durability disk (each entry on disk before its call goes on; the default)"
      : "audit durability os (each entry handed to the OS, synced in the background)";
  const leases = settings.leaseReads
    ? "read leases on (the leader answers linearizable reads from its lease)"
    : "read leases off (every linearizable read waits for a heartbeat round; the default)";
  const requestIds = settings.requestIds ? "writes with request ids" : "writes without request ids";
  const flags =
    settings.nodeOptions.length === 0 ? "no Node flags" : `Node flags ${settings.nodeOptions.join(" ")}`;
  return `the strongroom nodes on Node ${settings.serverNodeVersion} with ${flags}; ${audit}; ${leases}; ${requestIds}`;
}
