// The benchmark's readings of /proc (bench/vs-etcd/process-stats.ts), on this machine's real /proc:
// what bench:vs-etcd's "machine busy" and "loop run/wait" columns are made of.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterEach, expect, it } from "vitest";
import {
  busyShare,
  contextSwitches,
  cpuSeconds,
  machineTicks,
  mainThreadSchedule,
} from "../../bench/vs-etcd/process-stats.js";

let child: ChildProcess | null = null;

afterEach(async () => {
  if (child !== null && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await once(child, "exit");
  }
  child = null;
});

/** A process whose main thread spins for `ms`, then exits; resolves once it has started spinning. */
async function spinner(ms: number): Promise<ChildProcess> {
  const spinning = spawn(
    process.execPath,
    ["-e", `process.stdout.write("go\\n"); const end = Date.now() + ${ms}; while (Date.now() < end);`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await once(spinning.stdout as NodeJS.ReadableStream, "data");
  return spinning;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

it("counts a spinning main thread's time on a core, and the machine as busy meanwhile", async () => {
  child = await spinner(3_000);
  const pid = child.pid as number;
  const machineBefore = machineTicks();
  const before = mainThreadSchedule(pid);
  await sleep(500);
  const after = mainThreadSchedule(pid);
  const machineAfter = machineTicks();
  const ran = after.runSeconds - before.runSeconds;
  // Half a second on one of the machine's cores, less what it waited for one.
  expect(ran + (after.waitSeconds - before.waitSeconds)).toBeGreaterThan(0.3);
  expect(ran).toBeGreaterThan(0.1);
  expect(ran).toBeLessThanOrEqual(0.6);
  // Its process's CPU (every thread) is at least its main thread's.
  expect(cpuSeconds(pid)).toBeGreaterThanOrEqual(after.runSeconds - 0.05);
  const busy = busyShare(machineBefore, machineAfter);
  expect(busy).toBeGreaterThan(0);
  expect(busy).toBeLessThanOrEqual(1);
  expect(machineAfter.total).toBeGreaterThan(machineBefore.total);
});

it("counts a sleeping main thread as neither running nor waiting", async () => {
  child = spawn(process.execPath, ["-e", 'process.stdout.write("go\\n"); setTimeout(() => {}, 5000);'], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await once(child.stdout as NodeJS.ReadableStream, "data");
  const pid = child.pid as number;
  await sleep(100);
  const before = mainThreadSchedule(pid);
  await sleep(500);
  const after = mainThreadSchedule(pid);
  expect(after.runSeconds - before.runSeconds).toBeLessThan(0.05);
  expect(after.waitSeconds - before.waitSeconds).toBeLessThan(0.05);
});

it("says which process it could not read", () => {
  // Beyond pid_max (at most 2^22 on Linux): no such process.
  expect(() => mainThreadSchedule(4_194_305)).toThrow(/4194305/);
  expect(() => contextSwitches(4_194_305)).toThrow(/4194305/);
});

/** A Node process whose main thread wakes every `everyMs` (0: never), started and idle. */
async function waker(everyMs: number): Promise<ChildProcess> {
  const body = everyMs > 0 ? `setInterval(() => {}, ${everyMs})` : "setTimeout(() => {}, 60000)";
  const started = spawn(process.execPath, ["-e", `process.stdout.write("go\\n"); ${body};`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await once(started.stdout as NodeJS.ReadableStream, "data");
  return started;
}

it("counts each wake-up of a process's threads as a context switch", async () => {
  child = await waker(5);
  const wakingPid = child.pid as number;
  const sleeping = await waker(0);
  try {
    await sleep(200);
    const wakingBefore = contextSwitches(wakingPid);
    const sleepingBefore = contextSwitches(sleeping.pid as number);
    await sleep(600);
    const woke = contextSwitches(wakingPid) - wakingBefore;
    const slept = contextSwitches(sleeping.pid as number) - sleepingBefore;
    // A timer every 5 ms for 600 ms: about 120 wake-ups of its event loop, each a switch onto a core.
    expect(woke).toBeGreaterThan(80);
    expect(slept).toBeLessThan(woke / 4);
    expect(slept).toBeGreaterThanOrEqual(0);
  } finally {
    sleeping.kill("SIGKILL");
    await once(sleeping, "exit");
  }
});
