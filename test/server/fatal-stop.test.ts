// A node whose data disk fills stops on the failed write (its state or Raft log), and before it
// tells its caller (`strongroom server` exits there) it ends its audit trail as a crash leaves it:
// the trail takes no more calls, and its files hold whole lines only; a stop called after it (a
// program running the node in its own process) still lets go of the stores. The data directory is a
// tmpfs of its own (the test runs as root, as CI does); the audit directory is on another disk, so
// that the node's writes reach the state and the log.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { listAuditFiles } from "../../server/audit/audit-file.js";
import { verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { SecretStateMachine } from "../../storage/state/index.js";
import { call, callError, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

// One node on 127.0.0.151, ports from 43700.
const pki = new TestPki("fatal-stop");
const root = mkdtempSync(join(tmpdir(), "strongroom-fatal-stop-"));
const [spec] = nodeSpecs(1, 43_700, 150);
const cluster = new InProcessCluster(pki);
let mounted: string | null = null;

afterAll(async () => {
  if (mounted !== null) execFileSync("umount", ["-l", mounted]);
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

it("a node that stops on a full data disk ends its audit first: no call recorded after, no torn line", async () => {
  if (spec === undefined) throw new Error("no node spec");
  const auditDirectory = join(root, "audit");
  const entry = writeConfigs(pki, root, [spec], () => ({ audit: { directories: [auditDirectory] } })).get(
    spec.id,
  );
  if (entry === undefined) throw new Error("no config");
  // Room for the Raft log's first preallocated segments (64 MiB each) and the state.
  mkdirSync(entry.config.dataDir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=192m", "tmpfs", entry.config.dataDir]);
  mounted = entry.config.dataDir;

  let fatal: Error | null = null;
  let refusedAtFatal: Promise<{ reason: string; details: string }> | null = null;
  await cluster.start(spec, entry.config, {
    onFatal: (error) => {
      fatal = error;
      // Where `strongroom server` exits: the trail must already refuse to record a call.
      const secrets = cluster.client(spec.id).secrets;
      refusedAtFatal = callError(secrets.put.bind(secrets), { path: "app/after", value: new Uint8Array(1) });
    },
  });
  await cluster.initializeWithOneShare(spec.id);
  const secrets = cluster.client(spec.id).secrets;
  await call(secrets.put.bind(secrets), { path: "app/before", value: new Uint8Array(16) });

  try {
    writeFileSync(join(entry.config.dataDir, "filler"), Buffer.alloc(256 * 1024 * 1024));
  } catch {
    // ENOSPC: the data disk is full, which is the point.
  }
  // Writes of 64 KiB until one fails on the disk (bounded in count and time).
  const until = Date.now() + 15_000;
  for (let i = 0; fatal === null && i < 200 && Date.now() < until; i++) {
    await Promise.allSettled(
      Array.from({ length: 8 }, (_, j) =>
        call(secrets.put.bind(secrets), { path: `app/k${i}-${j}`, value: new Uint8Array(64 * 1024).fill(j) }),
      ),
    );
  }
  expect(fatal, "the node did not stop on its full disk").not.toBeNull();
  expect(String((fatal as Error | null)?.message)).toMatch(/no space left on device|ENOSPC/i);
  expect(await refusedAtFatal).toMatchObject({
    reason: "STOPPING",
    details: "this node is stopping: it records no more calls",
  });
  const files = listAuditFiles(auditDirectory);
  for (const file of files) expect(readFileSync(file, "utf8").endsWith("\n"), file).toBe(true);
  const verification = verifyAuditFiles(files, null);
  expect(verification.problems.filter((problem) => /incomplete|not a JSON line/.test(problem))).toEqual([]);
  expect(verification.closed).toBe(false);

  // A program that runs the node in its own process stops it: the stop ends although the state
  // cannot write its applied index any more, and lets go of the stores (LevelDB's lock with them:
  // with room on the disk again, the state opens).
  await cluster.stop();
  rmSync(join(entry.config.dataDir, "filler"), { force: true });
  const state = await SecretStateMachine.open(join(entry.config.dataDir, "state"));
  await state.close();
}, 60_000);
