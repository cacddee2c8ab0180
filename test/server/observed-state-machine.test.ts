// What the node hears of each applied entry beyond the state itself: a sys.putAll (init's records,
// a CA) is told as the puts it is made of, so the access view takes the root token and the seal
// keeper reloads the seal record as they would after separate puts. Real LevelDB.

import { expect, it } from "vitest";
import { ObservedStateMachine } from "../../server/observed-state-machine.js";
import type { SecretCommand } from "../../storage/state/index.js";
import { applyNext, stateMachineStores } from "../storage/fixtures/state-machine-stores.js";

const stores = stateMachineStores("observed-state-machine");
const bytes = (text: string) => new TextEncoder().encode(text);

it("tells a sys.putAll as its puts, and a change to the seal area once", async () => {
  const state = await stores.open(stores.newDirectory());
  const records: SecretCommand[] = [];
  let systemChanges = 0;
  let secretChanges = 0;
  new ObservedStateMachine(state, {
    onSystemRecord: (command) => records.push(command),
    onSystemChange: () => systemChanges++,
    onSecretChange: () => secretChanges++,
    onRestoring: () => {},
    onRestore: () => {},
    onLoad: () => {},
  });

  await applyNext(state, {
    op: "sys.putAll",
    path: "",
    records: [
      { area: "token", path: "root", value: bytes("a root token") },
      { area: "seal", path: "current", value: bytes("a seal record") },
    ],
    ifAbsent: [{ area: "seal", path: "current" }],
    at: 7,
  });
  expect(records).toEqual([
    { op: "sys.put", area: "token", path: "root", value: bytes("a root token"), at: 7 },
    { op: "sys.put", area: "seal", path: "current", value: bytes("a seal record"), at: 7 },
  ]);
  expect(systemChanges).toBe(1);
  expect(secretChanges).toBe(0);

  // Only the access areas: no reload of the seal record and keyring.
  await applyNext(state, {
    op: "sys.putAll",
    path: "",
    records: [{ area: "pki", path: "ca", value: bytes("a CA") }],
    ifAbsent: [],
    at: 8,
  });
  expect(records).toHaveLength(3);
  expect(systemChanges).toBe(1);
  expect(secretChanges).toBe(0);
});
