// strongroom.v1.Cluster: this node's view of the cluster, membership changes (one server at a
// time, as the Raft core allows) and leadership transfer. A new member's addresses are replicated
// (a member record) before it is added, so every node can reach it when the change applies. The
// leader also says how far along and how healthy each member is, and promotes only a learner
// that has caught up.

import {
  type AddMemberRequest,
  ClusterService,
  type Member,
  type MemberRequest,
  type MembershipResponse,
  type MembersResponse,
  type StatusResponse,
  type TransferLeaderResponse,
} from "../../proto/gen/strongroom/v1/cluster.gen.js";
import type { MembershipChange, RaftStatus } from "../../raft/core/index.js";
import type { RaftNode } from "../../raft/node/index.js";
import { type ApplyResult, encodeCommand, StateError } from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { encodeMemberAddresses, type MemberDirectory, memberArea } from "../member-directory.js";
import {
  answersLeader,
  type MemberContact,
  type MemberHealth,
  memberHealth,
  promotionRefusal,
  quorumRefusal,
} from "../member-health.js";
import type { RequestContext } from "../request.js";
import type { SealKeeper } from "../seal-keeper.js";
import { checkedName } from "../tls/identity.js";
import { type AnyApiMethod, method } from "./api-method.js";

export interface ClusterApiParts {
  readonly nodeId: string;
  readonly region: string;
  readonly zone: string;
  readonly raft: () => RaftNode<ApplyResult | null>;
  /** The revision of the change made by the entry at a Raft index. */
  readonly revisionOf: (index: number) => number;
  readonly keeper: SealKeeper;
  readonly members: MemberDirectory;
  /** Why a peer cannot be reached, by node id (cleared when a message from it arrives). */
  readonly peerErrors: ReadonlyMap<string, string>;
  /** Whether a member said it would not take the leadership (sealed). */
  readonly declinesLeadership: (member: string) => boolean;
  /** Whether a member left this node's requests unanswered for an election timeout (PeerContact). */
  readonly outOfReach: (member: string) => boolean;
  /** When a message from a member last arrived (performance.now() time), if one did since the start. */
  readonly lastHeardFrom: (member: string) => number | undefined;
  /** raft.promoteLagEntriesMax: how far behind the commit index a learner may be promoted. */
  readonly promoteLagEntriesMax: number;
}

export function clusterMethods(api: ClusterApi): Record<string, AnyApiMethod> {
  const service = ClusterService;
  return {
    status: method(service.status, "local", async () => api.status()),
    members: method(service.members, "local", async () => api.membersView()),
    addMember: method(service.addMember, "leader", (request) => api.addMember(request)),
    promoteLearner: method(service.promoteLearner, "leader", (request) => api.promote(request)),
    removeMember: method(service.removeMember, "leader", (request) =>
      api.change({ kind: "removeNode", node: api.knownMember(request) }),
    ),
    transferLeader: method(service.transferLeader, "leader", (request, context) =>
      api.transfer(request, context),
    ),
  };
}

export class ClusterApi {
  constructor(private readonly parts: ClusterApiParts) {}

  status(): StatusResponse {
    const status = this.parts.raft().status();
    const seal = this.parts.keeper.status();
    return {
      nodeId: this.parts.nodeId,
      role: status.role,
      term: status.term,
      leaderId: status.leader ?? "",
      commitIndex: status.commit,
      appliedIndex: status.applied,
      initialized: seal.initialized,
      sealed: seal.sealed,
      region: this.parts.region,
      zone: this.parts.zone,
    };
  }

  membersView(): MembersResponse {
    const status = this.parts.raft().status();
    return {
      members: this.members(status),
      answeredBy: this.parts.nodeId,
      leaderView: status.role === "leader",
      commitIndex: status.commit,
    };
  }

  members(status = this.parts.raft().status()): Member[] {
    const leading = status.role === "leader";
    // PeerContact's times are the monotonic clock's.
    const now = performance.now();
    const describe = (id: string, voter: boolean): Member => ({
      nodeId: id,
      voter,
      peerAddress: this.parts.members.peerAddressOf(id),
      clientAddress: this.parts.members.clients.get(id) ?? "",
      leader: status.leader === id,
      connectionError: this.parts.peerErrors.get(id) ?? "",
      region: this.parts.members.locations.get(id)?.region ?? "",
      zone: this.parts.members.locations.get(id)?.zone ?? "",
      ...(leading ? this.progressOf(id, status, now) : notLeading),
    });
    return [
      ...status.membership.voters.map((id) => describe(id, true)),
      ...status.membership.learners.map((id) => describe(id, false)),
    ];
  }

  /** A member's progress and health as this node, the leader, sees them. */
  private progressOf(id: string, status: RaftStatus, now: number): MemberHealth {
    if (id === this.parts.nodeId) {
      const seal = this.parts.keeper.status();
      return {
        matchIndex: status.lastIndex,
        lastContactMs: 0,
        unreachable: false,
        sealed: seal.initialized && seal.sealed,
        caughtUp: true,
      };
    }
    return memberHealth(id, status, this.contactOf(id), this.parts.promoteLagEntriesMax, now);
  }

  /** Throws QUORUM_AT_RISK for a change after which too few voters would answer (member-health.ts). */
  private refuseQuorumAtRisk(change: MembershipChange): void {
    const status = this.parts.raft().status();
    // A node that no longer leads knows nobody's answers: its proposal is refused as NOT_LEADER.
    if (status.role !== "leader") return;
    const answers = (voter: string) => voter === this.parts.nodeId || answersLeader(this.contactOf(voter));
    const refusal = quorumRefusal(change, status.membership.voters, answers);
    if (refusal !== null) throw refusal;
  }

  private contactOf(id: string): MemberContact {
    return {
      lastHeardAt: this.parts.lastHeardFrom(id),
      outOfReach: this.parts.outOfReach(id),
      sealed: this.parts.declinesLeadership(id),
    };
  }

  async addMember(request: AddMemberRequest): Promise<MembershipResponse> {
    const id = validNodeId(request.nodeId);
    if (this.members().some((member) => member.nodeId === id)) {
      throw new NodeError("INVALID_ARGUMENT", `${id} is already a member`);
    }
    // Before its addresses are written over: the removed node may still run on its old log.
    if (this.parts.raft().status().membership.removed?.includes(id)) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `${id} was removed from the cluster; add the new node under a new id`,
      );
    }
    for (const [what, label] of [
      ["region", request.region],
      ["zone", request.zone],
    ] as const) {
      if (label.length > 64) throw new NodeError("INVALID_ARGUMENT", `${what} is longer than 64 characters`);
    }
    for (const [what, address] of [
      ["peer_address", request.peerAddress],
      ["client_address", request.clientAddress],
    ] as const) {
      if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(address)) {
        throw new NodeError("INVALID_ARGUMENT", `${what} must be host:port, got ${JSON.stringify(address)}`);
      }
    }
    // Before the addresses are written: a change refused here leaves nothing behind.
    this.refuseQuorumAtRisk({ kind: request.voter ? "addVoter" : "addLearner", node: id });
    const { result } = await this.parts.raft().propose(
      encodeCommand({
        op: "sys.put",
        area: memberArea,
        path: id,
        value: encodeMemberAddresses({
          peerAddress: request.peerAddress,
          clientAddress: request.clientAddress,
          region: request.region,
          zone: request.zone,
        }),
        at: Date.now(),
      }),
    );
    if (result !== null && !result.ok) throw new StateError(result.code, result.message);
    // Operators add a learner, let it catch up, then promote it: a voter that is far behind
    // weakens the quorum until it catches up (docs/operations.md).
    return this.change({ kind: request.voter ? "addVoter" : "addLearner", node: id });
  }

  async promote(request: MemberRequest): Promise<MembershipResponse> {
    const id = this.knownMember(request);
    const status = this.parts.raft().status();
    // A voter is refused by the Raft core ("already a voter"), and a node that no longer leads
    // by its proposal (NOT_LEADER); a learner must be ready.
    if (status.role === "leader" && !status.membership.voters.includes(id)) {
      const refusal = promotionRefusal(id, status, this.contactOf(id), this.parts.promoteLagEntriesMax);
      if (refusal !== null) throw refusal;
    }
    return this.change({ kind: "addVoter", node: id });
  }

  async change(change: MembershipChange): Promise<MembershipResponse> {
    this.refuseQuorumAtRisk(change);
    const { index } = await this.parts.raft().proposeMembershipChange(change);
    return { members: this.members(), revision: this.parts.revisionOf(index) };
  }

  async transfer(request: MemberRequest, context: RequestContext): Promise<TransferLeaderResponse> {
    const target = this.knownMember(request);
    const raft = this.parts.raft();
    if (raft.status().leader === target) return { leaderId: target };
    // Refused here rather than waited out: it would not campaign, or not hear the offer, and the
    // offer would cost this leader its read lease for the rest of its term (leadership.ts).
    // Out of reach first: what a member said before it went (sealed) may no longer hold.
    if (this.parts.outOfReach(target))
      throw new NodeError(
        "MEMBER_UNREACHABLE",
        `${target} has not answered this leader for an election timeout (down, or cut off): it cannot take the leadership now`,
      );
    if (this.parts.declinesLeadership(target))
      throw new NodeError(
        "MEMBER_SEALED",
        `${target} declines the leadership (it is sealed): unseal it before moving the leadership to it`,
      );
    raft.transferLeadership(target);
    while (performance.now() < context.answerBy) {
      const leader = raft.status().leader;
      if (leader === target) return { leaderId: target };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new NodeError(
      "DEADLINE_EXCEEDED",
      `${target} did not take over before the deadline (is it behind, or cut off?)`,
    );
  }

  knownMember(request: MemberRequest): string {
    const id = validNodeId(request.nodeId);
    if (!this.members().some((member) => member.nodeId === id)) {
      throw new NodeError("INVALID_ARGUMENT", `${id} is not a member`);
    }
    return id;
  }
}

/** A node that does not lead does not know the others' progress: the fields stay zero. */
const notLeading: MemberHealth = {
  matchIndex: 0,
  lastContactMs: 0,
  unreachable: false,
  sealed: false,
  caughtUp: false,
};

function validNodeId(id: string): string {
  try {
    return checkedName(id, "node id");
  } catch (error) {
    throw new NodeError("INVALID_ARGUMENT", (error as Error).message);
  }
}
