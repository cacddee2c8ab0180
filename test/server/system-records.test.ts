// Creating a system record that must not exist yet (the PKI's CA): checked as the entry applies,
// in log order, so of two creations proposed at once one is refused, whatever each proposer read
// before. A one-member Raft node on real segment files and LevelDB.

import { expect, it } from "vitest";
import { SystemRecords } from "../../server/system-records.js";
import { unsealedBarrier } from "../storage/fixtures/state-machine-stores.js";
import { oneMemberRafts } from "./fixtures/one-member-raft.js";

const startRaft = oneMemberRafts("system-records");

async function oneMemberCluster(systemPutAllUsable: boolean) {
  const { raft, state } = await startRaft();
  const barrier = unsealedBarrier();
  const records = new SystemRecords({
    raft: () => raft,
    barrier,
    state,
    systemPutAllUsable: () => systemPutAllUsable,
  });
  return records;
}

const text = (value: string) => new TextEncoder().encode(value);

it("of two creations of one record at once, one writes it and the other is refused", async () => {
  const records = await oneMemberCluster(true);
  const outcomes = await Promise.allSettled([
    records.create("pki", "ca", text("first CA")),
    records.create("pki", "ca", text("second CA")),
  ]);
  expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(["fulfilled", "rejected"]);
  const refused = outcomes.find((outcome) => outcome.status === "rejected");
  expect(refused?.reason).toMatchObject({ code: "CAS_MISMATCH", message: "the pki record ca exists" });
  const written = outcomes[0]?.status === "fulfilled" ? "first CA" : "second CA";
  expect(new TextDecoder().decode((await records.read("pki", "ca")) ?? undefined)).toBe(written);
  // Once it exists, a later creation is refused too, and the record stays.
  await expect(records.create("pki", "ca", text("third CA"))).rejects.toMatchObject({ code: "CAS_MISMATCH" });
  expect(new TextDecoder().decode((await records.read("pki", "ca")) ?? undefined)).toBe(written);
});

it("until every member understands the check, refuses only what this node has applied", async () => {
  const records = await oneMemberCluster(false);
  await records.create("pki", "ca", text("first CA"));
  await expect(records.create("pki", "ca", text("second CA"))).rejects.toMatchObject({
    code: "CAS_MISMATCH",
    message: "the pki record ca exists",
  });
  expect(new TextDecoder().decode((await records.read("pki", "ca")) ?? undefined)).toBe("first CA");
});
