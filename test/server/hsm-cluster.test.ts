// A three-process cluster sealed by a real SoftHSM2 token: init with the HSM makes every node
// unseal by itself (no operator), a node killed with SIGKILL and restarted unseals by itself and
// catches up on what was written while it was down, and a node started while the token is away
// stays sealed until it is back; one whose HSM hangs serves meanwhile, sealed, saying why. A node
// an operator sealed stays sealed, whatever the HSM and the
// seal record do, until a threshold of recovery shares lets its HSM unseal it again.

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as grpcStatus, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { runCli } from "../cli/cli-runner.js";
import { SoftHsm } from "../hsm/softhsm-fixture.js";
import { eventually } from "../support/eventually.js";
import { type Clients, call, clientsFor, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";
import { bundledCli, NodeProcess } from "./process-cluster.js";

const hsm = new SoftHsm();
const token = hsm.initToken("cluster");
const pki = new TestPki("hsm-cluster");
const root = mkdtempSync(join(tmpdir(), "strongroom-hsm-cluster-"));
const specs = nodeSpecs(3, 29_000, 80);
const configs = writeConfigs(pki, root, specs, () => ({
  seal: {
    pkcs11: {
      libraryPath: hsm.libraryPath,
      tokenLabel: token.label,
      pinFile: token.pinFile,
      keyLabel: "cluster-root",
      mechanism: "aes-gcm",
      callTimeoutMs: 3000,
    },
  },
}));
const processes = specs.map(
  (spec) => new NodeProcess(spec, configs.get(spec.id)?.file ?? "", { SOFTHSM2_CONF: hsm.configPath }),
);
const clients = new Map(
  specs.map((spec) => [spec.id, clientsFor(`${spec.host}:${spec.clientPort}`, pki)] as const),
);

/** Set by the first test's init. */
let rootToken = "";
let recoveryShares: readonly string[] = [];

function clientOf(id: string): Clients {
  const found = clients.get(id);
  if (found === undefined) throw new Error(`no client for ${id}`);
  return found;
}

async function healthCode(node: NodeProcess): Promise<number> {
  return node.healthStatus().catch(() => 0);
}

/** Waits until the node reports itself unsealed and serving (health 200 or 429). */
async function untilUnsealed(node: NodeProcess, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (![200, 429].includes(await healthCode(node))) {
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function read(id: string, path: string): Promise<string> {
  const secrets = clientOf(id).secrets;
  const response = await call(secrets.get.bind(secrets), {
    path,
    version: 0,
    consistency: Consistency.CONSISTENCY_LINEARIZABLE,
    maxStalenessMs: 0,
  });
  return new TextDecoder().decode(response.value);
}

beforeAll(async () => {
  await Promise.all(processes.map((node) => node.start()));
}, 60_000);

afterAll(async () => {
  for (const client of clients.values()) client.close();
  await Promise.all(processes.map((node) => node.kill()));
  pki.cleanup();
  hsm.cleanup();
  rmSync(root, { recursive: true, force: true });
});

it("init with the HSM unseals every node by itself; a killed node restarts unsealed and catches up", async () => {
  const sys = clientOf("n2").sys;
  const strongroom = await operatorCli(processes[1] as NodeProcess);
  // Options the seal would not use are refused, not ignored.
  expect(await strongroom(["operator", "init", "--hsm", "--shares", "0", "--threshold", "2"])).toMatchObject({
    code: 2,
    stderr: "strongroom: with --shares 0 there are no unseal shares: give --recovery-threshold\n",
  });
  expect(await strongroom(["operator", "init", "--hsm", "--recovery-shares", "3"])).toMatchObject({
    code: 2,
    stderr: expect.stringContaining("--recovery-shares and --recovery-threshold are for an HSM-only seal"),
  });
  // The cluster may still be electing its first leader: Init waits for one within its deadline.
  const initialized = await strongroom([
    "operator",
    "init",
    "--hsm",
    "--generate-hsm-key",
    "--shares",
    "0",
    "--recovery-shares",
    "3",
    "--recovery-threshold",
    "2",
    "--format",
    "json",
  ]);
  expect(initialized.code).toBe(0);
  const init = JSON.parse(initialized.stdout) as {
    unsealShares: string[];
    recoveryShares: string[];
    recoveryThreshold: number;
    rootToken: string;
  };
  expect(init.unsealShares).toEqual([]);
  expect(init.recoveryThreshold).toBe(2);
  for (const spec of specs) clientOf(spec.id).useToken(init.rootToken);
  expect(init.recoveryShares).toHaveLength(3);
  rootToken = init.rootToken;
  recoveryShares = init.recoveryShares;
  for (const node of processes) await untilUnsealed(node, 15_000, `${node.spec.id} did not unseal by itself`);
  const status = await call(sys.sealStatus.bind(sys), {});
  expect(status).toMatchObject({
    initialized: true,
    sealed: false,
    unsealedBy: "pkcs11",
    sealTypes: ["pkcs11"],
    hsmKeyLabel: "cluster-root",
    hsmMechanism: "aes-gcm",
  });

  const secrets = clientOf("n1").secrets;
  await call(secrets.put.bind(secrets), { path: "hsm/before", value: new TextEncoder().encode("one") });
  const victim = processes[2];
  if (victim === undefined) throw new Error("no third node");
  await victim.kill();
  // If the victim led, n1 may have forwarded this write on its connection to the dead node before
  // it saw the connection close (FORWARD_FAILED, outcome unknown), or find no leader yet: sent
  // again with its request id until it goes through, as the SDK does, it applies once.
  const whileDown = {
    path: "hsm/while-down",
    value: new TextEncoder().encode("two"),
    requestId: randomUUID(),
  };
  await eventually(
    () =>
      call(secrets.put.bind(secrets), whileDown).then(
        () => true,
        (error: ServiceError) => {
          if (error.code === grpcStatus.UNAVAILABLE) return false;
          throw error;
        },
      ),
    15_000,
  );
  await victim.start();
  await untilUnsealed(victim, 15_000, "the restarted node did not unseal by itself");
  expect(await read("n3", "hsm/before")).toBe("one");
  expect(await read("n3", "hsm/while-down")).toBe("two");

  // Started while the token is away, a node stays sealed (503), then unseals when it returns.
  await victim.kill();
  hsm.removeToken(token);
  try {
    await victim.start();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await healthCode(victim)).toBe(503);
    const view = await call(clientOf("n3").sys.sealStatus.bind(clientOf("n3").sys), {});
    expect(view.hsmLastError).toMatch(/HSM_UNAVAILABLE|not present/);
  } finally {
    hsm.restoreToken(token);
  }
  await untilUnsealed(victim, 40_000, "the node did not unseal when the token came back");
  expect(await read("n3", "hsm/while-down")).toBe("two");

  // Started while the HSM hangs (a call into the module never returns), a node still serves
  // (start() waits for its health endpoint): sealed (503), saying why; it unseals once the HSM
  // answers again.
  await victim.kill();
  hsm.hangToken(token);
  try {
    await victim.start();
    const sys3 = clientOf("n3").sys;
    await eventually(
      async () => /did not answer within 3 s/.test((await call(sys3.sealStatus.bind(sys3), {})).hsmLastError),
      15_000,
    );
    expect(await healthCode(victim)).toBe(503);
  } finally {
    hsm.unhangToken(token);
  }
  await untilUnsealed(victim, 40_000, "the node did not unseal when the HSM answered again");
  expect(await read("n3", "hsm/while-down")).toBe("two");

  // HSM key rotation: the root key is wrapped under a new key; with the old key deleted, a
  // restarted node still unseals by itself (the record names the new key).
  // (to the other mechanism too: the record names it, the nodes' configs still say aes-gcm)
  const rotated = await call(sys.rotateHsmKey.bind(sys), {
    keyLabel: "cluster-root-2",
    mechanism: "aes-key-wrap-pad",
    generateKey: true,
  });
  expect(rotated).toMatchObject({
    sealed: false,
    sealTypes: ["pkcs11"],
    hsmKeyLabel: "cluster-root-2",
    hsmMechanism: "aes-key-wrap-pad",
    // The node stayed unsealed across the new record, which its HSM would unseal it by.
    hsmState: "unsealed",
  });
  expect(hsm.deleteKey(token, "cluster-root")).toBe(1);
  await victim.kill();
  await victim.start();
  await untilUnsealed(victim, 20_000, "the node did not unseal with the rotated HSM key");
  expect(await read("n3", "hsm/before")).toBe("one");
}, 120_000);

/** The CLI, as an operator holding the root token, against `node`. */
async function operatorCli(
  node: NodeProcess,
): Promise<(args: string[], input?: string) => ReturnType<typeof runCli>> {
  const cli = await bundledCli();
  const operator = pki.client("operator");
  return (args, input = "") =>
    runCli(cli, [...args, "--addr", `${node.spec.host}:${node.spec.clientPort}`], input, {
      STRONGROOM_CACERT: operator.caFile,
      STRONGROOM_CLIENT_CERT: operator.certificateFile,
      STRONGROOM_CLIENT_KEY: operator.privateKeyFile,
      STRONGROOM_TOKEN: rootToken,
    });
}

it("a node an operator sealed stays sealed until a threshold of recovery shares lets the HSM unseal it", async () => {
  const victim = processes[2];
  if (victim === undefined) throw new Error("no third node");
  const strongroom = await operatorCli(victim);
  const n3 = clientOf("n3");

  expect(await strongroom(["operator", "seal"])).toMatchObject({ code: 0, stdout: "n3: sealed\n" });
  expect(await healthCode(victim)).toBe(503);
  // Its HSM had unsealed it; its status must not say so now.
  const sealedStatus = await strongroom(["operator", "status"]);
  expect(sealedStatus.code).toBe(2);
  expect(sealedStatus.stdout).toMatch(/^hsm auto-unseal +stopped$/m);

  // A new seal record (the HSM key rotated) reaches the sealed node: it must not unseal by itself.
  const viaN1 = await operatorCli(processes[0] as NodeProcess);
  expect(
    await viaN1(["operator", "rotate-hsm-key", "--key-label", "cluster-root-3", "--mechanism", "des"]),
  ).toMatchObject({ code: 2, stderr: expect.stringContaining("--mechanism is aes-gcm or aes-key-wrap-pad") });
  expect(
    await viaN1(["operator", "rotate-hsm-key", "--key-label", "cluster-root-3", "--generate-key"]),
  ).toMatchObject({
    code: 0,
    stdout:
      'the root key is wrapped by HSM key "cluster-root-3"; keep the old key until the snapshots taken before now have expired, then delete it from the token\n',
  });
  // Without --mechanism, the one the seal uses now (not the config's).
  expect((await viaN1(["operator", "status"])).stdout).toMatch(
    /^hsm key +cluster-root-3 \(aes-key-wrap-pad\)$/m,
  );
  expect(await viaN1(["operator", "rotate-hsm-key", "--key-label", "cluster-root-3"])).toMatchObject({
    code: 1,
    stderr: expect.stringContaining('the root key is already wrapped by "cluster-root-3"'),
  });
  const statusOf = (id: string) => call(clientOf(id).cluster.status.bind(clientOf(id).cluster), {});
  // The leader's commit index covers the rotation, which answered once it was committed.
  const { commitIndex } = await statusOf((await statusOf("n1")).leaderId);
  const deadline = Date.now() + 10_000;
  while ((await statusOf("n3")).appliedIndex < commitIndex) {
    if (Date.now() > deadline) throw new Error("n3 did not apply the rotated seal record");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(await healthCode(victim)).toBe(503);
  const status = await strongroom(["operator", "status"]);
  expect(status.code).toBe(2);
  expect(status.stdout).toMatch(/^hsm auto-unseal +stopped$/m);
  expect(await call(n3.sys.sealStatus.bind(n3.sys), {})).toMatchObject({
    sealed: true,
    hsmState: "stopped",
    threshold: 2,
    shares: 3,
    progress: 0,
  });

  // One recovery share is not enough; it waits in the attempt for the next operator.
  const first = await strongroom(["operator", "unseal"], `${recoveryShares[2]}\n`);
  expect(first).toMatchObject({ code: 2, stdout: "n3: sealed (1/2 shares)\n" });
  expect(first.stderr).toContain("1 node(s) still sealed: give more shares");
  const metrics = await fetch(`http://${victim.spec.host}:${victim.spec.httpPort}/metrics`);
  expect(await metrics.text()).toMatch(/^strongroom_seal_unseal_progress 1$/m);

  // The threshold is reached while the token is away: the shares are taken, the HSM cannot
  // answer, and the node goes back to retrying by itself until the token is back.
  hsm.removeToken(token);
  try {
    const second = await strongroom(["operator", "unseal"], `${recoveryShares[0]}\n`);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("1 node(s) still sealed: their HSM did not give the root key");
    expect(second.stdout).toMatch(
      /^n3: sealed: the recovery shares were accepted, the HSM has not unsealed it \(waiting: .*not present/,
    );
  } finally {
    hsm.restoreToken(token);
  }
  await untilUnsealed(victim, 40_000, "n3 did not unseal by its HSM after the recovery shares");
  expect(await read("n3", "hsm/before")).toBe("one");
  expect(await call(n3.sys.sealStatus.bind(n3.sys), {})).toMatchObject({
    sealed: false,
    unsealedBy: "pkcs11",
    hsmState: "unsealed",
  });
  // An unsealed node asks for no share.
  expect(await strongroom(["operator", "unseal"])).toMatchObject({ code: 0, stdout: "n3: unsealed\n" });
}, 120_000);

it("migrates the seal to the HSM and Shamir both: the recovery shares become unseal shares", async () => {
  const victim = processes[2];
  if (victim === undefined) throw new Error("no third node");
  const strongroom = await operatorCli(victim);
  const [share1 = "", share2 = "", share3 = ""] = recoveryShares;

  // One operator starts the migration; a share for another target is refused and not taken, and
  // --reset discards the attempt (the first share is then taken again, not refused as a duplicate).
  const started = await strongroom(["operator", "migrate-seal", "--hsm", "--shamir"], `${share1}\n`);
  expect(started).toMatchObject({
    code: 2,
    stderr: "1/2 shares\nstrongroom: not enough shares were given\n",
  });
  expect(await strongroom(["operator", "migrate-seal", "--shamir"], `${share2}\n`)).toMatchObject({
    code: 1,
    stderr:
      "strongroom: a migration to shamir + hsm is in progress: give your share with the same target, or reset it (operator migrate-seal --reset) (INVALID_ARGUMENT)\n",
  });
  expect(await strongroom(["operator", "migrate-seal", "--reset"])).toMatchObject({
    code: 0,
    stdout: "seal migration reset: give the shares again\n",
  });
  const migrated = await strongroom(
    ["operator", "migrate-seal", "--hsm", "--shamir"],
    `${share1}\n${share2}\n`,
  );
  expect(migrated).toMatchObject({ code: 0, stdout: "seal: pkcs11 + shamir\n", stderr: "1/2 shares\n" });

  // Sealed by an operator, n3 opens with the former recovery shares, now Shamir unseal shares.
  expect(await strongroom(["operator", "seal"])).toMatchObject({ code: 0, stdout: "n3: sealed\n" });
  expect(await strongroom(["operator", "unseal"], `${share3}\n${share1}\n`)).toMatchObject({
    code: 0,
    stdout: "n3: unsealed\n",
  });
  const n3 = clientOf("n3");
  expect(await call(n3.sys.sealStatus.bind(n3.sys), {})).toMatchObject({
    sealed: false,
    unsealedBy: "shamir",
    sealTypes: ["pkcs11", "shamir"],
    threshold: 2,
    shares: 3,
  });
  expect(await read("n3", "hsm/before")).toBe("one");
  // A restart still unseals by the HSM, which the migration kept.
  await victim.kill();
  await victim.start();
  await untilUnsealed(victim, 20_000, "the node did not unseal by its HSM after the migration");
  expect((await call(n3.sys.sealStatus.bind(n3.sys), {})).unsealedBy).toBe("pkcs11");
}, 120_000);

it("a rekey and an HSM key rotation at once: one may be refused, neither is undone by the other", async () => {
  const sys = clientOf("n1").sys;
  const n3 = clientOf("n3").sys;
  // Since the migration, the former recovery shares are the unseal shares (2 of 3).
  const [share1 = "", share2 = ""] = recoveryShares;
  const labelBefore = (await call(n3.sealStatus.bind(n3), {})).hsmKeyLabel;
  expect(labelBefore).toBe("cluster-root-3");
  const started = await call(sys.rekey.bind(sys), {
    share: share1,
    nonce: "",
    // Another count and threshold than now (3, 2), so that a node's status shows the new record.
    newShares: { count: 4, threshold: 3, operatorKeys: [] },
    reset: false,
  });
  expect(started).toMatchObject({ complete: false, progress: 1 });
  // Both start from the same seal record: the one that commits second would write over the
  // first's change (the shares a rekey handed out, the new HSM key) unless it is refused.
  const [rekeyed, rotated] = await Promise.allSettled([
    call(sys.rekey.bind(sys), { share: share2, nonce: started.nonce, newShares: undefined, reset: false }),
    call(sys.rotateHsmKey.bind(sys), { keyLabel: "cluster-root-4", mechanism: "", generateKey: true }),
  ]);
  for (const outcome of [rekeyed, rotated]) {
    if (outcome.status === "rejected") {
      expect(outcome.reason).toMatchObject({
        code: grpcStatus.ABORTED,
        details:
          "the seal record changed while this ran (another rekey, seal migration or HSM key rotation committed first): nothing was changed; start again",
      });
    }
  }
  expect([rekeyed.status, rotated.status]).toContain("fulfilled");

  // What answered success holds; what was refused changed nothing. n3 shows it once it has
  // applied the record (the leader answered when it had).
  const expected =
    rekeyed.status === "fulfilled"
      ? { shares: 4, threshold: 3, working: rekeyed.value.shares, replaced: recoveryShares }
      : { shares: 3, threshold: 2, working: recoveryShares, replaced: [] };
  const hsmKeyLabel = rotated.status === "fulfilled" ? "cluster-root-4" : labelBefore;
  await eventually(async () => {
    const status = await call(n3.sealStatus.bind(n3), {});
    return (
      status.shares === expected.shares &&
      status.threshold === expected.threshold &&
      status.hsmKeyLabel === hsmKeyLabel
    );
  }, 10_000);
  await call(n3.seal.bind(n3), {});
  for (const share of expected.replaced.slice(0, 1)) {
    await expect(call(n3.unseal.bind(n3), { share, nonce: "", reset: false })).rejects.toMatchObject({
      code: grpcStatus.INVALID_ARGUMENT,
    });
  }
  for (const share of expected.working.slice(0, expected.threshold))
    await call(n3.unseal.bind(n3), { share, nonce: "", reset: false });
  expect(await call(n3.sealStatus.bind(n3), {})).toMatchObject({
    sealed: false,
    unsealedBy: "shamir",
    hsmKeyLabel,
  });
  expect(await read("n3", "hsm/before")).toBe("one");
}, 60_000);
