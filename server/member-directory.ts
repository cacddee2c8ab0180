// Where each member is reached: its peer address (Raft, forwarding) and client address (leader
// hints for clients). The founding members come from the config; members added later are
// replicated as records of the "member" system area (plain JSON: addresses are not secret, and a
// sealed node needs them to replicate). The maps are live: the transport and the forwarder read
// them at each dial, so an added member is reachable as soon as its record is applied.

import type { NodeId } from "../raft/core/index.js";
import type { SecretStateMachine } from "../storage/state/index.js";
import { NodeError } from "./errors.js";

export const memberArea = "member";

export interface MemberAddresses {
  readonly peerAddress: string;
  readonly clientAddress: string;
}

export class MemberDirectory {
  /** Peer addresses of every other member. */
  readonly peers = new Map<NodeId, string>();
  readonly clients = new Map<NodeId, string>();

  constructor(
    private readonly selfId: NodeId,
    founders: readonly ({ readonly id: NodeId } & MemberAddresses)[],
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

  private set(id: NodeId, addresses: MemberAddresses): void {
    if (id !== this.selfId) this.peers.set(id, addresses.peerAddress);
    this.clients.set(id, addresses.clientAddress);
  }
}

export function encodeMemberAddresses(addresses: MemberAddresses): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ peerAddress: addresses.peerAddress, clientAddress: addresses.clientAddress }),
  );
}

function decodeMemberAddresses(bytes: Uint8Array): MemberAddresses {
  const value = JSON.parse(new TextDecoder().decode(bytes)) as Partial<MemberAddresses>;
  if (typeof value.peerAddress !== "string" || typeof value.clientAddress !== "string") {
    throw new NodeError("INTERNAL", "a member record in the replicated state is malformed");
  }
  return { peerAddress: value.peerAddress, clientAddress: value.clientAddress };
}
