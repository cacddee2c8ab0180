// The members' health as Prometheus gauges, from the leader's view (Cluster.Members): what an SRE
// alerts on before a quorum is at risk - a voter that stopped answering, fell behind or was
// sealed (Vault's autopilot exports the same as `autopilot.node.healthy`). Only the leader knows
// the members' progress, so only the leader has samples; every other node exports none, and a
// query over the cluster's nodes finds the leader's.

import { Gauge, type Registry } from "prom-client";
import type { MembersResponse } from "../proto/gen/strongroom/v1/cluster.gen.js";

export function registerMemberMetrics(registry: Registry, view: () => MembersResponse): void {
  const perMember = (
    name: string,
    help: string,
    sampleOf: (member: Member, commit: number) => number | null,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ["member"],
      registers: [registry],
      collect() {
        this.reset();
        const seen = view();
        if (!seen.leaderView) return;
        for (const member of seen.members) {
          const value = sampleOf(member, seen.commitIndex);
          if (value !== null) this.set({ member: member.nodeId }, value);
        }
      },
    });
  perMember(
    "strongroom_cluster_member_healthy",
    "1 while a member answers the leader, is unsealed and is caught up (as PromoteLearner asks of a learner), 0 otherwise; exported by the leader only.",
    // Caught up includes answering the leader (member-health.ts).
    (member) => (member.caughtUp && !member.sealed ? 1 : 0),
  );
  perMember(
    "strongroom_cluster_member_behind_entries",
    "Log entries a member is behind the leader's commit index, as the leader knows it; exported by the leader only.",
    (member, commit) => Math.max(0, commit - member.matchIndex),
  );
  perMember(
    "strongroom_cluster_member_last_contact_seconds",
    "Seconds since the leader last heard from a member (none for a member it never heard from); exported by the leader only.",
    (member) => (member.lastContactMs < 0 ? null : member.lastContactMs / 1000),
  );
}

type Member = MembersResponse["members"][number];
