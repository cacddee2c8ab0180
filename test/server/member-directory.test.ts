// The member directory as the node wires it: told of each command the state machine applies, it
// holds an added member's addresses as the apply returns, before anything reads the state back
// (AddMember answers with them once its membership change commits). Real LevelDB.

import { describe, expect, it } from "vitest";
import { encodeMemberAddresses, MemberDirectory, memberArea } from "../../server/member-directory.js";
import { applyNext, stateMachineStores, systemPutCommand } from "../storage/fixtures/state-machine-stores.js";

const stores = stateMachineStores("member-directory");
const founders = [
  { id: "n1", peerAddress: "127.0.0.1:7001", clientAddress: "127.0.0.1:8001" },
  { id: "n2", peerAddress: "127.0.0.1:7002", clientAddress: "127.0.0.1:8002" },
];

const memberPut = (id: string, value: Uint8Array) => systemPutCommand(memberArea, id, value);

async function fixture(directory = stores.newDirectory()) {
  const machine = await stores.open(directory);
  const members = new MemberDirectory("n1", founders);
  const refusals: Error[] = [];
  machine.onApplied((_index, command) => {
    members.applied(command, machine).catch((error: Error) => refusals.push(error));
  });
  return { machine, members, refusals, apply: applyNext.bind(null, machine) };
}

describe("the member directory", () => {
  it("holds an added member's addresses once its record applies, and a restarted node reads them back", async () => {
    const { machine, members, apply } = await fixture();
    const addresses = { peerAddress: "127.0.0.4:7004", clientAddress: "127.0.0.4:8004", region: "eu-west" };
    expect(await apply(memberPut("n4", encodeMemberAddresses(addresses)))).toEqual({
      ok: true,
      version: null,
    });
    // No turn of the event loop in between: nothing could have read the state back yet.
    expect(members.peerAddressOf("n4")).toBe("127.0.0.4:7004");
    expect(members.clients.get("n4")).toBe("127.0.0.4:8004");
    expect(members.locations.get("n4")).toEqual({ region: "eu-west", zone: "" });
    expect(members.peers.get("n4")).toBe("127.0.0.4:7004");
    // Its own address is not a peer to dial.
    expect(members.peers.has("n1")).toBe(false);
    expect(members.peerAddressOf("n1")).toBe("127.0.0.1:7001");

    const restarted = new MemberDirectory("n2", founders);
    expect(restarted.peerAddressOf("n4")).toBe("");
    await restarted.reload(machine);
    expect(restarted.peerAddressOf("n4")).toBe("127.0.0.4:7004");
    expect(restarted.clients.get("n4")).toBe("127.0.0.4:8004");
  });

  it("refuses a malformed member record and keeps the members it knows", async () => {
    const { members, refusals, apply } = await fixture();
    await apply(memberPut("n5", new TextEncoder().encode(JSON.stringify({ peerAddress: 5 }))));
    await expect
      .poll(() => refusals.map((error) => error.message))
      .toEqual(["a member record in the replicated state is malformed"]);
    expect(members.peerAddressOf("n5")).toBe("");
    expect(members.peerAddressOf("n2")).toBe("127.0.0.1:7002");
  });
});
