// Starts and talks to the PKCS#11 helper process (pkcs11-helper-process.ts): one per node
// process, shared by its Pkcs11Clients, as a loaded module is shared by a process. Every call has
// a deadline. A vendor's module can block in a call for as long as its device or network does, and
// its calls are synchronous: made in the node's own process, such a call stopped the event loop
// (no heartbeats, no answers, not even `operator status`), and a worker thread would not do
// either, as a thread blocked in native code cannot be stopped and holds the process's exit. A
// call past its deadline fails with HSM_UNAVAILABLE, the helper is killed with every call it
// holds, and the next call starts a fresh one. The calls are rare (an unseal, a rotation), so an
// idle helper exits after helperIdleMs rather than hold a process's memory for the node's life.

import { type ChildProcess, fork } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { SealError } from "../errors.js";
import { describeToken, type Pkcs11Config } from "./pkcs11-config.js";
import type { HelperAnswer, HelperCall, HelperRequest } from "./pkcs11-helper-protocol.js";

interface PendingCall {
  readonly resolve: (value: Uint8Array | null) => void;
  readonly reject: (error: SealError) => void;
  readonly timer: NodeJS.Timeout;
}

interface RunningHelper {
  readonly process: ChildProcess;
  readonly pending: Map<number, PendingCall>;
  idleTimer: NodeJS.Timeout | null;
}

/** How long a helper with no call waits for the next before it exits. */
const helperIdleMs = 10_000;

let helper: RunningHelper | null = null;
let nextRequestId = 1;
let exitHookInstalled = false;

/** Runs `call` in the helper; rejects with a SealError, HSM_UNAVAILABLE past `timeoutMs`. */
export function callHelper(
  client: number,
  config: Pkcs11Config,
  call: HelperCall,
  timeoutMs: number,
): Promise<Uint8Array | null> {
  let running: RunningHelper;
  try {
    running = helper ?? startHelper();
  } catch (error) {
    return Promise.reject(error);
  }
  if (running.idleTimer !== null) clearTimeout(running.idleTimer);
  running.idleTimer = null;
  const id = nextRequestId++;
  const request: HelperRequest = { id, client, config, environment: nodeEnvironment(), call };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const seconds = timeoutMs / 1000;
      stopHelper(
        running,
        new SealError(
          "HSM_UNAVAILABLE",
          `${describeToken(config)} (${config.libraryPath}) did not answer within ${seconds} s (seal.pkcs11.callTimeoutMs): the call was abandoned`,
        ),
      );
    }, timeoutMs);
    running.pending.set(id, { resolve, reject, timer });
    running.process.send(request, (error) => {
      if (error !== null)
        stopHelper(running, new SealError("HSM_ERROR", `cannot reach the PKCS#11 helper: ${error.message}`));
    });
  });
}

/** Tells the helper a client is done with its session, if a helper is running (no answer awaited). */
export function closeHelperSession(client: number, config: Pkcs11Config): void {
  const running = helper;
  if (running === null || !running.process.connected) return;
  const request: HelperRequest = {
    id: 0,
    client,
    config,
    environment: nodeEnvironment(),
    call: { kind: "close" },
  };
  running.process.send(request, () => {});
}

/** The helper's process id, or null when none runs (for tests and diagnostics). */
export function helperProcessId(): number | null {
  return helper?.process.pid ?? null;
}

function startHelper(): RunningHelper {
  const { entry, execArgv } = helperEntry();
  const child = fork(entry, [], {
    execArgv,
    serialization: "advanced",
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const running: RunningHelper = { process: child, pending: new Map(), idleTimer: null };
  helper = running;
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A helper blocked in a call is not left behind when the node exits.
    process.on("exit", () => helper?.process.kill("SIGKILL"));
  }
  // An idle helper does not keep the node alive; a pending call's timer does while it waits.
  child.unref();
  child.channel?.unref();
  child.on("message", (answer: HelperAnswer) => settle(running, answer));
  child.on("error", (error) =>
    stopHelper(running, new SealError("HSM_ERROR", `the PKCS#11 helper failed: ${error.message}`)),
  );
  child.on("exit", (code, signal) =>
    stopHelper(
      running,
      new SealError(
        "HSM_ERROR",
        `the PKCS#11 helper exited (${signal ?? `code ${code}`}) during the call: the module crashed, or the helper was killed`,
      ),
    ),
  );
  return running;
}

/**
 * The helper's entry point, next to this module: compiled (dist/), in a bundle of the program's
 * entry points (the tests' child processes), or the TypeScript source (tests, the dev cluster),
 * which runs through tsx's loader.
 */
function helperEntry(): { entry: string; execArgv: string[] } {
  for (const extension of [".js", ".mjs", ".ts"]) {
    const entry = fileURLToPath(new URL(`./pkcs11-helper-process${extension}`, import.meta.url));
    if (!existsSync(entry)) continue;
    if (extension !== ".ts") return { entry, execArgv: [] };
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
    return { entry, execArgv: ["--import", tsx] };
  }
  throw new SealError(
    "HSM_ERROR",
    `the PKCS#11 helper's entry point (pkcs11-helper-process.js) is not next to ${fileURLToPath(import.meta.url)}`,
  );
}

function settle(running: RunningHelper, answer: HelperAnswer): void {
  const pending = running.pending.get(answer.id);
  if (pending === undefined) return;
  running.pending.delete(answer.id);
  clearTimeout(pending.timer);
  if (answer.ok) pending.resolve(answer.value);
  else pending.reject(new SealError(answer.code, answer.message));
  if (running.pending.size === 0) {
    running.idleTimer = setTimeout(() => {
      if (running.pending.size > 0) return;
      if (helper === running) helper = null;
      // The helper exits when its channel closes, its sessions with it.
      running.process.disconnect();
    }, helperIdleMs);
    running.idleTimer.unref();
  }
}

/** Kills the helper and fails every call it holds with `error`; the next call starts another. */
function stopHelper(running: RunningHelper, error: SealError): void {
  if (helper === running) helper = null;
  if (running.idleTimer !== null) clearTimeout(running.idleTimer);
  for (const pending of running.pending.values()) {
    clearTimeout(pending.timer);
    pending.reject(error);
  }
  running.pending.clear();
  if (running.process.exitCode === null && running.process.signalCode === null)
    running.process.kill("SIGKILL");
}

function nodeEnvironment(): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined) environment[name] = value;
  }
  return environment;
}
