// Two inits at once, as two leaders across a leadership change could run them (each past its own
// check that no seal record exists): one writes the keyring, its root token and the seal record,
// the other nothing, and the winner's share unseals the cluster. As separate puts, both answered
// and the cluster kept whichever seal record came last. A one-member Raft node on real disk
// files; each "leader" is the sys API with its own seal keeper, as each node has.

import { expect, it } from "vitest";
import { SysService } from "../../proto/gen/strongroom/v1/sys.gen.js";
import { sysMethods } from "../../server/api/sys-api.js";
import { PeerContact } from "../../server/peer-contact.js";
import { ReadBarrier } from "../../server/read-barrier.js";
import type { RequestContext } from "../../server/request.js";
import { SealKeeper } from "../../server/seal-keeper.js";
import { Barrier } from "../../storage/barrier/index.js";
import { oneMemberRafts } from "./fixtures/one-member-raft.js";

const startRaft = oneMemberRafts("init-race");

const context = (): RequestContext => ({
  method: SysService.init.path,
  identity: "operator",
  token: null,
  deadline: Date.now() + 10_000,
  forwardedBy: null,
  authorization: { caller: null, tokenUseSpent: false },
});

const initRequest = {
  shamir: { count: 1, threshold: 1, operatorKeys: [] },
  hsm: false,
  generateHsmKey: false,
  recovery: undefined,
};

it("of two inits at once, one initializes the cluster and the other writes nothing", async () => {
  const { raft, state } = await startRaft();
  const keeperOn = () =>
    new SealKeeper({
      state,
      barrier: new Barrier(),
      shareAttemptTimeoutMs: 60_000,
      autoUnsealRetryMaxMs: 1000,
      onChange: () => {},
    });
  const leaderApi = () =>
    sysMethods({
      nodeId: "n1",
      raft: () => raft,
      state,
      keeper: keeperOn(),
      reads: new ReadBarrier(() => raft, new PeerContact(1000)),
      shareAttemptTimeoutMs: 60_000,
      issueRootToken: () => Promise.reject(new Error("init issues its root token itself")),
      systemPutAllUsable: () => true,
    });
  const inits = await Promise.allSettled(
    [leaderApi(), leaderApi()].map((api) => api.init?.handler(initRequest, context())),
  );
  expect(inits.map((outcome) => outcome.status).sort()).toEqual(["fulfilled", "rejected"]);
  const refused = inits.find((outcome) => outcome.status === "rejected");
  expect(refused?.reason).toMatchObject({
    code: "ALREADY_INITIALIZED",
    message:
      "the cluster was initialized by another init that committed first: this one wrote nothing, and its shares and root token are void",
  });
  const answered = inits.find((outcome) => outcome.status === "fulfilled");
  if (answered === undefined) throw new Error("no init answered");
  const share = answered.value?.unsealShares[0] ?? "";

  // A node that reads the records now unseals with the share the winner handed out: the seal
  // record and the keyring are the winner's both.
  const keeper = keeperOn();
  await keeper.reload();
  expect(await keeper.unsealWithShare(share, "")).toMatchObject({ sealed: false });
  expect(keeper.sealed()).toBe(false);
});
