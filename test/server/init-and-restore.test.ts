// Init and snapshot restore on a new cluster. Racing, as two leaders across a leadership change
// could run them (each past its own check that the cluster is not initialized): whatever the
// interleaving, one of them gives the cluster its keyring and seal record, the other writes nothing
// and says so, and the winner's shares unseal. Then a restore that failed half-way, and a snapshot
// with no keys. A one-member Raft node on real disk files; each "leader" is the sys API or the
// restore with its own seal keeper and lock, as each node has.

import { expect, it } from "vitest";
import { SysService } from "../../proto/gen/strongroom/v1/sys.gen.js";
import type { RaftNode } from "../../raft/node/index.js";
import { type RestoreParts, restoreSnapshot } from "../../server/api/snapshot-handlers.js";
import { sysMethods } from "../../server/api/sys-api.js";
import { ClusterSetupLock } from "../../server/cluster-setup-lock.js";
import { PeerContact } from "../../server/peer-contact.js";
import { ReadBarrier } from "../../server/read-barrier.js";
import type { RequestContext } from "../../server/request.js";
import { SealKeeper } from "../../server/seal-keeper.js";
import { Barrier } from "../../storage/barrier/index.js";
import { type ApplyResult, encodeCommand, type SecretStateMachine } from "../../storage/state/index.js";
import { oneMemberRafts } from "./fixtures/one-member-raft.js";

const startRaft = oneMemberRafts("init-and-restore");

type Raft = RaftNode<ApplyResult | null>;

const context = (): RequestContext => ({
  method: SysService.init.path,
  identity: "operator",
  token: null,
  answerBy: performance.now() + 10_000,
  forwardedBy: null,
  authorization: { caller: null, tokenUseSpent: false },
});

const initRequest = {
  shamir: { count: 1, threshold: 1, operatorKeys: [] },
  hsm: false,
  generateHsmKey: false,
  recovery: undefined,
};

const keeperOn = (state: SecretStateMachine) =>
  new SealKeeper({
    state,
    barrier: new Barrier(),
    shareAttemptTimeoutMs: 60_000,
    autoUnsealRetryMaxMs: 1000,
    onChange: () => {},
  });

/** One "leader"'s init: its own seal keeper and lock. */
async function initOn(raft: Raft, state: SecretStateMachine): Promise<string> {
  const api = sysMethods({
    nodeId: "n1",
    raft: () => raft,
    cannotLead: () => false,
    electionTimeoutMs: 1000,
    state,
    keeper: keeperOn(state),
    reads: new ReadBarrier(() => raft, new PeerContact(1000)),
    shareAttemptTimeoutMs: 60_000,
    issueRootToken: () => Promise.reject(new Error("init issues its root token itself")),
    systemPutAllUsable: () => true,
    setupLock: new ClusterSetupLock(),
  });
  const answer = await api.init?.handler(initRequest, context());
  return answer?.unsealShares[0] ?? "";
}

/** Another "leader"'s restore: its own seal keeper and lock. */
function restoreOn(raft: Raft, state: SecretStateMachine, read: () => AsyncIterable<Uint8Array>) {
  const parts: RestoreParts = {
    raft: () => raft,
    state,
    keeper: keeperOn(state),
    systemPutAllUsable: () => true,
    setupLock: new ClusterSetupLock(),
  };
  return restoreSnapshot(parts, read);
}

/** Whether a node reading the records now unseals with `share`. */
async function unseals(state: SecretStateMachine, share: string): Promise<boolean> {
  const keeper = keeperOn(state);
  await keeper.reload();
  try {
    return (await keeper.unsealWithShare(share, "")).sealed === false;
  } catch {
    return false;
  }
}

/** An initialized cluster's snapshot, and the share that unseals it. */
async function savedCluster(): Promise<{ parts: Uint8Array[]; share: string }> {
  const { raft, state } = await startRaft();
  const share = await initOn(raft, state);
  // Its own records, which a restore leaves out: a member's addresses, the features it recorded.
  for (const [area, path] of [
    ["member", "n1"],
    ["cluster", "features"],
  ] as const) {
    const value = new TextEncoder().encode(JSON.stringify({ saved: true }));
    await raft.propose(encodeCommand({ op: "sys.put", area, path, value, at: Date.now() }));
  }
  const held = await state.holdSnapshot();
  const parts: Uint8Array[] = [];
  for await (const part of held.read()) parts.push(Uint8Array.from(part));
  await held.release();
  return { parts, share };
}

/** A promise and the function that settles it. */
function signal(): { promise: Promise<void>; fire: () => void } {
  let fire = () => {};
  const promise = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { promise, fire };
}

/**
 * The snapshot's bytes for a restore; the read numbered `held` (1: the check, 2: the records)
 * fires `reached` and waits for `release` before giving any.
 */
function heldReads(parts: Uint8Array[], held: number, reached: () => void, release: Promise<void>) {
  let reads = 0;
  return async function* read(): AsyncGenerator<Uint8Array> {
    reads += 1;
    if (reads === held) {
      reached();
      await release;
    }
    yield* parts;
  };
}

it("of two inits at once, one initializes the cluster and the other writes nothing", async () => {
  const { raft, state } = await startRaft();
  const inits = await Promise.allSettled([initOn(raft, state), initOn(raft, state)]);
  expect(inits.map((outcome) => outcome.status).sort()).toEqual(["fulfilled", "rejected"]);
  const refused = inits.find((outcome) => outcome.status === "rejected");
  expect(refused?.reason).toMatchObject({
    code: "ALREADY_INITIALIZED",
    message:
      "the cluster was initialized by another init or a snapshot restore that committed first: this one wrote nothing, and its shares and root token are void",
  });
  const answered = inits.find((outcome) => outcome.status === "fulfilled");
  if (answered === undefined) throw new Error("no init answered");
  // The seal record and the keyring are the winner's both.
  expect(await unseals(state, answered.value)).toBe(true);
});

it("an init that commits while a restore is past its check leaves the restore writing nothing", async () => {
  const saved = await savedCluster();
  const { raft, state } = await startRaft();
  const checking = signal();
  const release = signal();
  const restoring = restoreOn(raft, state, heldReads(saved.parts, 1, checking.fire, release.promise));
  await checking.promise;
  const share = await initOn(raft, state);
  release.fire();
  await expect(restoring).rejects.toMatchObject({
    code: "ALREADY_INITIALIZED",
    message: "an init committed first: the cluster is initialized and nothing was restored",
  });
  expect(await unseals(state, share)).toBe(true);
  expect(await unseals(state, saved.share)).toBe(false);
  expect(await state.systemRecord("cluster", "restoring")).toBeNull();
});

it("an init past its check when a restore's keyring commits is refused, and the restore completes", async () => {
  const saved = await savedCluster();
  const { raft, state } = await startRaft();
  // The init's proposal waits until the restore has written its keyring and not its seal record.
  const initProposing = signal();
  const restoreLoading = signal();
  const heldRaft = new Proxy(raft, {
    get(target, property) {
      if (property === "propose") {
        return async (...args: Parameters<Raft["propose"]>) => {
          initProposing.fire();
          await restoreLoading.promise;
          return target.propose(...args);
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const initing = initOn(heldRaft, state);
  await initProposing.promise;
  const release = signal();
  const restoring = restoreOn(raft, state, heldReads(saved.parts, 2, restoreLoading.fire, release.promise));
  await expect(initing).rejects.toMatchObject({
    code: "ALREADY_INITIALIZED",
    message:
      "the cluster was initialized by another init or a snapshot restore that committed first: this one wrote nothing, and its shares and root token are void",
  });
  release.fire();
  expect(await restoring).toMatchObject({ records: expect.any(Number) });
  expect(await unseals(state, saved.share)).toBe(true);
});

it("after a restore that wrote its keyring and failed, init is refused until the restore is run again", async () => {
  const saved = await savedCluster();
  const { raft, state } = await startRaft();
  let reads = 0;
  const failingRead = async function* (): AsyncGenerator<Uint8Array> {
    reads += 1;
    if (reads === 2) throw new Error("the staged file could not be read");
    yield* saved.parts;
  };
  await expect(restoreOn(raft, state, failingRead)).rejects.toThrow("the staged file could not be read");
  await expect(initOn(raft, state)).rejects.toMatchObject({
    code: "ALREADY_INITIALIZED",
    message:
      "a snapshot restore into this cluster began and did not finish (its keyring is written, its seal record is not): run the restore again, or start the cluster afresh (empty data directories) to init it instead",
  });
  await restoreOn(raft, state, async function* () {
    yield* saved.parts;
  });
  expect(await unseals(state, saved.share)).toBe(true);
  // The restore's marker goes once its seal record is written; the saved cluster's own records
  // were not loaded.
  expect(await state.systemRecord("cluster", "restoring")).toBeNull();
  expect(await state.systemRecord("cluster", "features")).toBeNull();
  expect(await state.systemRecord("member", "n1")).toBeNull();
});

it("a keyring left by an init that stopped half-way (written record by record) does not stop the next init", async () => {
  const { raft, state } = await startRaft();
  // What an init writing its records one after the other (a member not heard from yet) leaves
  // when its leader stops after the first.
  await raft.propose(
    encodeCommand({
      op: "sys.put",
      area: "keyring",
      path: "current",
      value: new Uint8Array(64).fill(7),
      at: Date.now(),
    }),
  );
  const share = await initOn(raft, state);
  expect(await unseals(state, share)).toBe(true);
});

it("a snapshot without a keyring or a seal record is refused before anything is written", async () => {
  // An uninitialized cluster's snapshot: member records and the like, no keys.
  const empty = await startRaft();
  const held = await empty.state.holdSnapshot();
  const parts: Uint8Array[] = [];
  for await (const part of held.read()) parts.push(Uint8Array.from(part));
  await held.release();
  const { raft, state } = await startRaft();
  const lastIndexBefore = raft.status().lastIndex;
  await expect(
    restoreOn(raft, state, async function* () {
      yield* parts;
    }),
  ).rejects.toMatchObject({
    code: "INVALID_ARGUMENT",
    message: "the snapshot has no keyring or no seal record: it was not saved from an initialized cluster",
  });
  expect(raft.status().lastIndex).toBe(lastIndexBefore);
  expect(await initOn(raft, state)).not.toBe("");
});
