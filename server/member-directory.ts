// Where each member is reached: its peer address (Raft, forwarding) and client address (leader
// hints for clients). The founding members come from the config; members added later are
// replicated as records of the "member" system area (plain JSON: addresses are not secret, and a
// sealed node needs them to replicate). The maps are live: the transport and the forwarder read
// them at each dial, so an added member is reachable as soon as its record is applied.

import type { NodeId } from "../raft/core/index.js";
import type { SecretCommand, SecretStateMachine } from "../storage/state/index.js";
import { NodeError } from "./errors.js";

export const memberArea = "member";

export interface MemberAddresses {
  readonly peerAddress: string;
  readonly clientAddress: string;
  /** Where it runs (empty: not given). */
  readonly region?: string;
  readonly zone?: string;
}

export interface MemberLocation {
  readonly region: string;
  readonly zone: string;
}

export class MemberDirectory {
  /** Peer addresses of every other member. */
  readonly peers = new Map<NodeId, string>();
  readonly clients = new Map<NodeId, string>();
  /** Each member's region and zone, as the config or its AddMember said. */
  readonly locations = new Map<NodeId, MemberLocation>();
  /** This node's own peer address: not in `peers`, since nothing dials itself. */
  private selfPeerAddress = "";

  constructor(
    private readonly selfId: NodeId,
    founders: readonly ({ readonly id: NodeId } & MemberAddresses)[],
    /** This node's own region and zone (its config's), which win over what a list says of it. */
    private readonly selfLocation: MemberLocation = { region: "", zone: "" },
  ) {
    for (const member of founders) this.set(member.id, member);
  }

  /** Reads every member record of the replicated state (after an apply or a restore). */
  async reload(state: SecretStateMachine): Promise<void> {
    let after: string | null = null;
    for (;;) {
      const page = await state.listSystem(memberArea, after, 1000);
      for (const id of page.names) {
        const bytes = await state.systemRecord(memberArea, id);
        if (bytes !== null) this.set(id, decodeMemberAddresses(bytes));
      }
      if (page.next === null) return;
      after = page.next;
    }
  }

  /**
   * Told of every applied command, as it applies. A member record is taken from the command
   * itself, not read back: the AddMember that wrote it answers with every member's addresses once
   * its membership change commits, which must not race a read of the state. Records loaded in
   * bulk (a restore into this cluster) are read back. A member record is in place when this
   * returns (an async function runs up to its first await); a malformed one rejects.
   */
  async applied(command: SecretCommand, state: SecretStateMachine): Promise<void> {
    if (command.op === "sys.put" && command.area === memberArea) {
      this.set(command.path, decodeMemberAddresses(command.value));
    } else if (command.op === "state.load") {
      await this.reload(state);
    }
  }

  /** Where a member's peer port is, this node's own included ("" when unknown). */
  peerAddressOf(id: NodeId): string {
    return id === this.selfId ? this.selfPeerAddress : (this.peers.get(id) ?? "");
  }

  private set(id: NodeId, addresses: MemberAddresses): void {
    if (id !== this.selfId) this.peers.set(id, addresses.peerAddress);
    else this.selfPeerAddress = addresses.peerAddress;
    this.clients.set(id, addresses.clientAddress);
    this.locations.set(
      id,
      id === this.selfId && this.selfLocation.region !== ""
        ? this.selfLocation
        : { region: addresses.region ?? "", zone: addresses.zone ?? "" },
    );
  }
}

export function encodeMemberAddresses(addresses: MemberAddresses): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      peerAddress: addresses.peerAddress,
      clientAddress: addresses.clientAddress,
      region: addresses.region ?? "",
      zone: addresses.zone ?? "",
    }),
  );
}

/**
 * The regions whose loss takes the voters below a quorum: with voters spread well (5 over 3
 * regions, 2-2-1) there are none. Voters without a region are not counted as in any.
 */
export function regionsHoldingQuorum(
  voters: readonly NodeId[],
  locations: ReadonlyMap<NodeId, MemberLocation>,
): string[] {
  const quorum = Math.floor(voters.length / 2) + 1;
  const perRegion = new Map<string, number>();
  for (const voter of voters) {
    const region = locations.get(voter)?.region ?? "";
    if (region !== "") perRegion.set(region, (perRegion.get(region) ?? 0) + 1);
  }
  return [...perRegion]
    .filter(([, count]) => voters.length - count < quorum)
    .map(([region]) => region)
    .sort();
}

function decodeMemberAddresses(bytes: Uint8Array): MemberAddresses {
  const value = JSON.parse(new TextDecoder().decode(bytes)) as Partial<MemberAddresses>;
  if (typeof value.peerAddress !== "string" || typeof value.clientAddress !== "string") {
    throw new NodeError("INTERNAL", "a member record in the replicated state is malformed");
  }
  return {
    peerAddress: value.peerAddress,
    clientAddress: value.clientAddress,
    region: typeof value.region === "string" ? value.region : "",
    zone: typeof value.zone === "string" ? value.zone : "",
  };
}
