// The seal keeper's reloads of the seal record and keyring, as the node asks for one at each
// change applied: one that fails does not stop the ones after it. Real LevelDB.

import { expect, it } from "vitest";
import { encodeSealRecord, initializeSeal } from "../../hsm/index.js";
import { SealKeeper } from "../../server/seal-keeper.js";
import { Barrier } from "../../storage/barrier/index.js";
import { wellKnownRecords } from "../../storage/state/index.js";
import { applyNext, stateMachineStores, systemPutCommand } from "../storage/fixtures/state-machine-stores.js";

const stores = stateMachineStores("seal-keeper");

it("reads the seal record again after a reload that failed", async () => {
  const state = await stores.open(stores.newDirectory());
  const { seal } = wellKnownRecords;
  const putSealRecord = (value: Uint8Array) =>
    applyNext(state, systemPutCommand(seal.area, seal.name, value));
  const keeper = new SealKeeper({
    state,
    barrier: new Barrier(),
    shareAttemptTimeoutMs: 60_000,
    autoUnsealRetryMaxMs: 1000,
    onChange: () => {},
  });

  await putSealRecord(new TextEncoder().encode("not a seal record"));
  await expect(keeper.reload()).rejects.toMatchObject({ code: "SEAL_RECORD_INVALID" });
  expect(keeper.initialized()).toBe(false);

  const init = await initializeSeal({ shamir: { count: 1, threshold: 1 } });
  await putSealRecord(encodeSealRecord(init.record));
  await keeper.reload();
  expect(keeper.initialized()).toBe(true);
  expect(keeper.status()).toMatchObject({ initialized: true, sealed: true });
});
