// `strongroom server` runs its helper threads (libuv's pool, V8's, LevelDB's) under SCHED_BATCH
// and its event loop as started (threads.helperPolicy, server/helper-threads.ts): read from the
// real process's /proc, after real `chrt` calls. Without `chrt` the node still serves.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { threadPolicies } from "../../server/helper-threads.js";
import { eventually } from "../support/eventually.js";
import { nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";
import { NodeProcess } from "./process-cluster.js";

const schedOther = 0;
const schedBatch = 3;

// One node at a time on 127.0.0.248, ports from 53700.
const pki = new TestPki("helper-threads");
const root = mkdtempSync(join(tmpdir(), "strongroom-helper-threads-"));
const [spec] = nodeSpecs(1, 53_700, 247);
let running: NodeProcess | null = null;

afterEach(async () => {
  await running?.kill();
  running = null;
});
afterAll(() => {
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function startNode(name: string, helperPolicy: string | null, env: NodeJS.ProcessEnv = {}) {
  if (spec === undefined) throw new Error("no node spec");
  const entry = writeConfigs(pki, join(root, name), [spec], () =>
    helperPolicy === null ? {} : { threads: { helperPolicy } },
  ).get(spec.id);
  if (entry === undefined) throw new Error("no config");
  running = new NodeProcess(spec, entry.file, env);
  await running.start();
  const pid = running.pid;
  if (pid === null) throw new Error("no process");
  return pid;
}

it("by default every thread but the event loop's is batch, the event loop is left as started", async () => {
  const pid = await startNode("default", null);
  await eventually(
    () => [...threadPolicies(pid)].every(([tid, policy]) => tid === pid || policy === schedBatch),
    10_000,
  );
  const threads = threadPolicies(pid);
  expect(threads.get(pid)).toBe(schedOther);
  // libuv's four pool threads and V8's helpers at least.
  expect(threads.size).toBeGreaterThan(5);
});

it("with helperPolicy inherit no thread is changed", async () => {
  const pid = await startNode("inherit", "inherit");
  // The batch pass runs right after the start, which health waited for; give it a second more.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  expect([...threadPolicies(pid).values()].every((policy) => policy === schedOther)).toBe(true);
});

it("without chrt the node serves, its threads as started", async () => {
  // PATH without /usr/bin: no chrt (the node is started by the absolute path of node).
  const pid = await startNode("no-chrt", null, { PATH: "/nonexistent" });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  expect([...threadPolicies(pid).values()].every((policy) => policy === schedOther)).toBe(true);
  // 501: up, and not initialized yet (a new node).
  expect(await running?.healthStatus()).toBe(501);
  // The operator is told why, and what to install.
  const warningOf = () =>
    running?.loggedLines().find((line) => line.includes("helper threads left as started"));
  await eventually(() => warningOf() !== undefined, 5000);
  expect(warningOf()).toContain("chrt is not on PATH (util-linux; Debian: apt-get install util-linux)");
});

it("a helperPolicy that is neither batch nor inherit is refused at start", async () => {
  await expect(startNode("bad", "fifo")).rejects.toThrow(/threads\.helperPolicy/);
});
