// The PKCS#11 calls run in a helper process with a deadline: a token that hangs (a real SoftHSM2
// blocked in open() on its token file) costs a failed call within callTimeoutMs while the caller's
// event loop goes on, the hung helper is killed, and the next call, once the token answers, works
// in a fresh one. A helper that dies during a call fails that call with the reason.

import { readFileSync } from "node:fs";
import { afterAll, expect, it } from "vitest";
import { Pkcs11Client } from "../../hsm/pkcs11/pkcs11-client.js";
import type { Pkcs11Config } from "../../hsm/pkcs11/pkcs11-config.js";
import { helperProcessId } from "../../hsm/pkcs11/pkcs11-helper.js";
import { SoftHsm } from "./softhsm-fixture.js";

const hsm = new SoftHsm();
const token = hsm.initToken("helper-test");
afterAll(() => hsm.cleanup());

const config: Pkcs11Config = {
  libraryPath: hsm.libraryPath,
  tokenLabel: token.label,
  pinFile: token.pinFile,
  keyLabel: "helper-root",
  mechanism: "aes-gcm",
  callTimeoutMs: 3000,
};
const rootKey = new Uint8Array(32).map((_, i) => i + 1);

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The running helper's process id (a call was made, so one runs). */
function runningHelper(): number {
  const pid = helperProcessId();
  if (pid === null) throw new Error("no PKCS#11 helper is running");
  return pid;
}

/** Waits until the helper is blocked opening the token's FIFO (where the kernel has it sleep). */
async function untilHung(): Promise<number> {
  let pid = 0;
  await expect
    .poll(
      () => {
        pid = helperProcessId() ?? 0;
        return pid === 0 ? "" : readFileSync(`/proc/${pid}/wchan`, "utf8");
      },
      { timeout: 5000 },
    )
    .toBe("wait_for_partner");
  return pid;
}

/** Kills the idle helper, so that the next call starts one whose module initializes afresh. */
async function killIdleHelper(): Promise<void> {
  const pid = runningHelper();
  process.kill(pid, "SIGKILL");
  while (processAlive(pid) || helperProcessId() === pid)
    await new Promise((resolve) => setTimeout(resolve, 10));
}

it("a call on a token that hangs fails within callTimeoutMs while the event loop runs; a fresh helper serves the next", async () => {
  const client = new Pkcs11Client(config);
  await client.ensureKey(config.keyLabel, { generate: true });
  const blob = await client.wrapRootKey(rootKey, config.keyLabel, config.mechanism);

  await killIdleHelper();
  hsm.hangToken(token);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  const started = Date.now();
  let hungHelper = 0;
  try {
    const call = client.unwrapRootKey(blob, config.keyLabel, config.mechanism);
    call.catch(() => {});
    hungHelper = await untilHung();
    await expect(call).rejects.toMatchObject({
      code: "HSM_UNAVAILABLE",
      message: `token "helper-test" (${hsm.libraryPath}) did not answer within 3 s (seal.pkcs11.callTimeoutMs): the call was abandoned`,
    });
  } finally {
    clearInterval(ticker);
    hsm.unhangToken(token);
  }
  const elapsed = Date.now() - started;
  expect(elapsed).toBeGreaterThanOrEqual(3000);
  // The loop was free throughout: about one tick per 10 ms (a blocked loop would give none).
  expect(ticks).toBeGreaterThan(elapsed / 10 / 3);
  // The hung helper was killed; the next call starts another, which reads the token again.
  await expect.poll(() => processAlive(hungHelper)).toBe(false);
  const back = await client.unwrapRootKey(blob, config.keyLabel, config.mechanism);
  expect(Array.from(back)).toEqual(Array.from(rootKey));
  expect(runningHelper()).not.toBe(hungHelper);
  client.close();
});

it("a helper that dies during a call fails the call with HSM_ERROR, and the next call works", async () => {
  const client = new Pkcs11Client({ ...config, callTimeoutMs: 30_000 });
  const blob = await client.wrapRootKey(rootKey, config.keyLabel, config.mechanism);
  await killIdleHelper();
  hsm.hangToken(token);
  try {
    const call = client.unwrapRootKey(blob, config.keyLabel, config.mechanism);
    call.catch(() => {});
    process.kill(await untilHung(), "SIGKILL");
    await expect(call).rejects.toMatchObject({
      code: "HSM_ERROR",
      message:
        "the PKCS#11 helper exited (SIGKILL) during the call: the module crashed, or the helper was killed",
    });
  } finally {
    hsm.unhangToken(token);
  }
  const back = await client.unwrapRootKey(blob, config.keyLabel, config.mechanism);
  expect(Array.from(back)).toEqual(Array.from(rootKey));
  client.close();
});

it("an idle helper exits 10 s after its last call, and the next call starts another", async () => {
  const client = new Pkcs11Client(config);
  const blob = await client.wrapRootKey(rootKey, config.keyLabel, config.mechanism);
  const idle = runningHelper();
  await new Promise((resolve) => setTimeout(resolve, 9000));
  expect(processAlive(idle)).toBe(true);
  await expect.poll(() => processAlive(idle), { timeout: 3000 }).toBe(false);
  expect(helperProcessId()).toBeNull();
  const back = await client.unwrapRootKey(blob, config.keyLabel, config.mechanism);
  expect(Array.from(back)).toEqual(Array.from(rootKey));
  expect(runningHelper()).not.toBe(idle);
  client.close();
}, 20_000);
