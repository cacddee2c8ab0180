// Leader placement (config `preferredLeaderRegion`): a leader outside the preferred region hands
// leadership to a voter inside it - the one with the most log - once that voter has been caught up
// at two checks in a row (a node that just came back, or that lags, is not handed a leadership it
// would lose again), and that can take it (not sealed, not out of reach: a TimeoutNow it would not
// act on costs the leader its read lease, leadership.ts). A handover that did not take (the target
// cut off, or sealed meanwhile) is not tried on the same voter again until a backoff has
// passed (the node's: at least 2 s), doubling up to five minutes: each attempt holds proposals for
// up to an election timeout. Without a preferred voter that is caught up, the leader stays where
// it is: availability first, placement second.

import type { RaftStatus } from "../raft/core/index.js";
import type { CannotLead } from "./leadership.js";
import { type MemberLocation, regionsHoldingQuorum } from "./member-directory.js";

export interface PlacementView {
  readonly status: RaftStatus;
  readonly locations: ReadonlyMap<string, MemberLocation>;
  readonly preferredRegion: string;
  readonly cannotLead: CannotLead;
}

/**
 * Among the voters in the preferred region that can take the leadership, the caught-up one with
 * the most log; null when this node need not (it is not the leader, or is in the region, or no
 * region is preferred) or cannot. A voter counts as caught up when it holds everything committed.
 */
export function placementTarget(view: PlacementView): string | null {
  const { status, locations, preferredRegion } = view;
  if (preferredRegion === "" || status.role !== "leader") return null;
  if (locations.get(status.id)?.region === preferredRegion) return null;
  let best: { id: string; match: number } | null = null;
  for (const id of status.membership.voters) {
    if (id === status.id || locations.get(id)?.region !== preferredRegion || view.cannotLead(id)) continue;
    const match = status.progress.get(id)?.match ?? 0;
    if (match < status.commit) continue;
    if (best === null || match > best.match) best = { id, match };
  }
  return best?.id ?? null;
}

export interface PlacementEvents {
  /** Leadership was offered to `target`, a voter of the preferred `region`. */
  readonly onHandover: (target: string, region: string) => void;
  /** The regions whose loss would lose the quorum changed (voters spread over several regions). */
  readonly onQuorumRegions: (regions: readonly string[]) => void;
}

export class LeaderPlacement {
  private caughtUpBefore: string | null = null;
  private readonly notBefore = new Map<string, { at: number; backoffMs: number }>();
  private quorumRegionsSaid = "";

  constructor(
    private readonly view: () => PlacementView,
    private readonly transfer: (target: string) => void,
    private readonly events: PlacementEvents,
    private readonly now: () => number = Date.now,
    private readonly firstBackoffMs = 10_000,
  ) {}

  /** The leader's periodic look: the voters' spread, then where the leader should be. */
  check(): string | null {
    const view = this.view();
    this.checkSpread(view);
    return this.place(view);
  }

  /** Says when one region's loss would lose the quorum, once per change (voters in 2+ regions). */
  private checkSpread(view: PlacementView): void {
    const { voters } = view.status.membership;
    const named = new Set(voters.map((id) => view.locations.get(id)?.region ?? "").filter((r) => r !== ""));
    const holding = named.size > 1 ? regionsHoldingQuorum(voters, view.locations) : [];
    if (holding.join(",") === this.quorumRegionsSaid) return;
    this.quorumRegionsSaid = holding.join(",");
    if (holding.length > 0) this.events.onQuorumRegions(holding);
  }

  /** Offers leadership to the preferred region's best voter; returns it, if it did. */
  private place(view: PlacementView): string | null {
    const target = placementTarget(view);
    const previous = this.caughtUpBefore;
    this.caughtUpBefore = target;
    if (target === null || target !== previous) return null;
    const waiting = this.notBefore.get(target);
    if (waiting !== undefined && this.now() < waiting.at) return null;
    // Back off in case it does not take; a leader that did hand over never checks again.
    const backoffMs = waiting === undefined ? this.firstBackoffMs : Math.min(waiting.backoffMs * 2, 300_000);
    this.notBefore.set(target, { at: this.now() + backoffMs, backoffMs });
    this.transfer(target);
    this.events.onHandover(target, view.preferredRegion);
    return target;
  }
}
