// Restart with an HSM seal, in real processes: the cluster's state (seal record, wrapped keyring,
// one secret) is written to LevelDB as the leader's init would; then a fresh node process opens it
// and must unseal by itself through SoftHSM2 and decrypt the secret - once with the token present,
// once with the token removed at start, where it must stay sealed, retry, and unseal when the
// token is put back.

import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import type { Pkcs11Config } from "../../hsm/pkcs11/pkcs11-config.js";
import { initializeSeal } from "../../hsm/seal-operations.js";
import { encodeSealRecord } from "../../hsm/seal-record.js";
import { Barrier, Keyring, wrapKeyring } from "../../storage/barrier/index.js";
import { encodeCommand, SecretStateMachine, wellKnownRecords } from "../../storage/state/index.js";
import { bundleChild } from "../support/bundle-child.js";
import { eventually } from "../support/eventually.js";
import { SoftHsm } from "./softhsm-fixture.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-seal-restart-"));
let nodeScript = "";
const hsm = new SoftHsm();
const token = hsm.initToken("restart");
const secretPath = "payments/stripe-key";
const secretValue = randomBytes(64);

beforeAll(async () => {
  // Native addons are loaded from node_modules, not bundled.
  nodeScript = await bundleChild(
    new URL("./fixtures/auto-unseal-node.ts", import.meta.url),
    "auto-unseal-node",
    ["classic-level", "pkcs11js"],
  );
});
afterAll(() => {
  hsm.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** What init leaves in a node's state: the seal record, the wrapped keyring and one secret. */
async function initializedState(directory: string, config: Pkcs11Config): Promise<void> {
  const client = new Pkcs11Client(config);
  const { record, rootKey } = await initializeSeal({ pkcs11: { client, generateKey: true } });
  client.close();
  const keyring = Keyring.create(0);
  const barrier = new Barrier();
  barrier.unseal(keyring);
  const state = await SecretStateMachine.open(directory);
  const { seal, keyring: keyringRecord } = wellKnownRecords;
  const commands = [
    encodeCommand({
      op: "sys.put",
      area: seal.area,
      path: seal.name,
      value: encodeSealRecord(record),
      at: 1,
    }),
    encodeCommand({
      op: "sys.put",
      area: keyringRecord.area,
      path: keyringRecord.name,
      value: wrapKeyring(keyring, rootKey),
      at: 1,
    }),
    encodeCommand({
      op: "kv.put",
      path: secretPath,
      ciphertext: barrier.encrypt(secretPath, secretValue),
      cas: null,
      at: 1,
    }),
  ];
  for (const [position, command] of commands.entries()) await state.apply(position + 1, command);
  await state.close();
  rootKey.fill(0);
  barrier.seal();
}

interface NodeProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
}

function startNode(directory: string, config: Pkcs11Config): NodeProcess {
  const child = spawn(process.execPath, [nodeScript, directory, JSON.stringify(config), secretPath], {
    env: { ...process.env, SOFTHSM2_CONF: hsm.configPath },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let pending = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    pending += chunk.toString();
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    lines.push(...parts);
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, lines, exited };
}

function configFor(keyLabel: string, mechanism: Pkcs11Config["mechanism"]): Pkcs11Config {
  return {
    libraryPath: hsm.libraryPath,
    tokenLabel: token.label,
    pinFile: token.pinFile,
    keyLabel,
    mechanism,
  };
}

const expectedLine = `value ${createHash("sha256").update(secretValue).digest("hex")}`;

it("a restarted node unseals by itself through the HSM and serves the secret", async () => {
  const directory = join(root, "node-a");
  const config = configFor("restart-a", "aes-gcm");
  await initializedState(directory, config);
  const node = startNode(directory, config);
  expect(await node.exited).toBe(0);
  expect(node.lines).toEqual([expectedLine]);
});

it("a node started while the token is gone stays sealed, retries, and unseals when it is back", async () => {
  const directory = join(root, "node-b");
  const config = configFor("restart-b", "aes-key-wrap-pad");
  await initializedState(directory, config);
  hsm.removeToken(token);
  let restored = false;
  try {
    const node = startNode(directory, config);
    await eventually(() => node.lines.length >= 3, 10_000);
    expect(node.lines.slice(0, 3)).toEqual([
      "failed HSM_UNAVAILABLE",
      "failed HSM_UNAVAILABLE",
      "failed HSM_UNAVAILABLE",
    ]);
    hsm.restoreToken(token);
    restored = true;
    expect(await node.exited).toBe(0);
    expect(node.lines.at(-1)).toBe(expectedLine);
    expect(node.lines.slice(0, -1).every((line) => line === "failed HSM_UNAVAILABLE")).toBe(true);
  } finally {
    if (!restored) hsm.restoreToken(token);
  }
});
