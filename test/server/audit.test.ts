// The audit trail's files on a real disk: appends are chained and fsynced (with durability "os":
// written, synced in the background, and kept through a SIGKILL), rotation keeps one chain
// across files, a restart continues it, sensitive values appear only as HMACs, and the verifier
// catches each kind of tampering - an edited, deleted, reordered or duplicated line, a deleted
// file, a rewritten file with forged checkpoints, a truncated end - and says where.

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { SeededRandom } from "../../raft/core/index.js";
import {
  type AuditLine,
  type AuditRecord,
  checkpointMac,
  hashLine,
  hashSensitive,
} from "../../server/audit/audit-chain.js";
import { AuditFile, type AuditFileOptions, listAuditFiles } from "../../server/audit/audit-file.js";
import { verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { bundleChild } from "../support/bundle-child.js";
import { eventually } from "../support/eventually.js";
import { bundledCli } from "./process-cluster.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-audit-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const auditKey = new Uint8Array(randomBytes(32));
let directories = 0;

function request(i: number, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    type: "request",
    requestId: `r${i}`,
    identity: "alice",
    method: "/strongroom.v1.Secrets/Get",
    path: `app/k${i}`,
    ...extra,
  };
}

/** A new trail directory and an open sink writing it (durability "disk" unless given). */
function openSink(options: Partial<Omit<AuditFileOptions, "directory" | "node">> = {}) {
  const directory = join(root, `trail-${++directories}`);
  const sink = AuditFile.open({
    directory,
    node: "n1",
    auditKey,
    maxFileBytes: 1024 * 1024,
    checkpointEvery: 10,
    durability: "disk",
    syncIntervalMs: 1000,
    ...options,
  });
  return { directory, sink };
}

/**
 * A directory with `count` request entries written through the sink and closed cleanly; with
 * `answered`, each followed by its response entry.
 */
async function writeTrail(
  count: number,
  options: { maxFileBytes?: number; checkpointEvery?: number; answered?: boolean } = {},
): Promise<string> {
  const { directory, sink } = openSink(options);
  // One at a time, as requests of one client arrive (appends that arrive together share one write,
  // and a file rotates between writes).
  for (let i = 0; i < count; i++) {
    await sink.append(request(i));
    if (options.answered !== false)
      await sink.append(request(i, { type: "response", outcome: "ok", code: "OK" }));
  }
  await sink.close();
  return directory;
}

/** The flags of this process's descriptor open on `file`, as the kernel sees them (/proc). */
function openFlags(file: string): number {
  const descriptor = readdirSync("/proc/self/fd").find((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  });
  expect(descriptor, `no descriptor open on ${file}`).toBeDefined();
  const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${descriptor}`, "utf8"))?.[1];
  return Number.parseInt(flags ?? "0", 8);
}

function lines(file: string): string[] {
  return readFileSync(file, "utf8").trimEnd().split("\n");
}

describe("writing", () => {
  it("writes appends that arrive together in one group, each resolved once it is on disk", async () => {
    const { directory, sink } = openSink({ checkpointEvery: 1000 });
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => [
        sink.append(request(i)),
        sink.append(request(i, { type: "response", outcome: "ok", code: "OK" })),
      ]).flat(),
    );
    expect(lines(listAuditFiles(directory)[0] ?? "")).toHaveLength(101);
    await sink.close();
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey)).toMatchObject({
      entries: 100,
      problems: [],
    });
  });

  it("gathers a write at the end of the event loop's turn: appends after any number of awaits share it", async () => {
    const writes: number[] = [];
    const { directory, sink } = openSink({
      checkpointEvery: 1000,
      onWrite: (entries) => writes.push(entries),
    });
    // The i-th call appends after i awaits, as calls reach the audit through promise chains.
    const appends = (from: number) =>
      Array.from({ length: 10 }, async (_, i) => {
        for (let hop = 0; hop < i; hop++) await Promise.resolve();
        await sink.append(request(from + i));
      });
    await Promise.all(appends(0));
    // Appends made while a write is in flight share the next one.
    const first = sink.append(request(10));
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.all([first, ...appends(11)]);
    expect(writes).toEqual([10, 1, 10]);
    await sink.close();
    // The header, 21 entries in the order they were appended, and the closing checkpoint.
    const written = lines(listAuditFiles(directory)[0] ?? "").map((line) => JSON.parse(line) as AuditLine);
    expect(written.slice(1, -1).map((entry) => entry.requestId)).toEqual(
      Array.from({ length: 21 }, (_, i) => `r${i}`),
    );
  });

  it("writes every file synchronously (O_DSYNC): a write that returned is on disk", async () => {
    const { directory, sink } = openSink({ maxFileBytes: 2048 });
    for (let i = 0; i < 20; i++) await sink.append(request(i));
    expect(listAuditFiles(directory).length).toBeGreaterThan(1);
    expect(openFlags(listAuditFiles(directory).at(-1) ?? "") & constants.O_DSYNC).toBe(constants.O_DSYNC);
    await sink.close();
  });

  it("chains every line to the one before, and verifies clean with and without the key", async () => {
    const directory = await writeTrail(25);
    const [file] = listAuditFiles(directory);
    const all = lines(file ?? "");
    expect(JSON.parse(all[0] ?? "{}")).toMatchObject({ type: "header", seq: 1, node: "n1" });
    for (let i = 1; i < all.length; i++)
      expect(JSON.parse(all[i] ?? "{}").prev).toBe(hashLine(all[i - 1] ?? ""));
    expect(JSON.parse(all.at(-1) ?? "{}").type).toBe("checkpoint");
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey)).toEqual({
      entries: 50,
      checkpoints: 6,
      problems: [],
      unanswered: [],
      closed: true,
      afterLastCheckpoint: 0,
    });
    // The last checkpoint is the closing one, and says so (its MAC covers it).
    expect(JSON.parse(all.at(-1) ?? "{}")).toMatchObject({ v: 2, closed: true });
    expect(all.filter((line) => line.includes('"closed":true'))).toHaveLength(1);
    expect(verifyAuditFiles(listAuditFiles(directory), null).problems).toEqual([]);
  });

  it("rotates by size and continues the chain across files and across a restart", async () => {
    const directory = await writeTrail(200, { maxFileBytes: 4096 });
    expect(listAuditFiles(directory).length).toBeGreaterThan(3);
    const sink = AuditFile.open({
      directory,
      node: "n1",
      auditKey,
      maxFileBytes: 4096,
      checkpointEvery: 10,
      durability: "disk",
      syncIntervalMs: 1000,
    });
    await sink.append(request(1000));
    await sink.append(request(1000, { type: "response", outcome: "ok", code: "OK" }));
    await sink.close();
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey)).toMatchObject({
      entries: 402,
      problems: [],
    });
  });

  it("after a crash, continues the chain from the last whole line however long the lines are", async () => {
    // Lines longer than the first part of the file's end a restart reads (64 KiB), then a line a
    // crash cut short: the chain goes on from the last whole line, found a larger window back.
    const { directory, sink } = openSink({ maxFileBytes: 64 * 1024 * 1024 });
    for (let i = 0; i < 3; i++) await sink.append(request(i, { path: `app/${String(i).repeat(100_000)}` }));
    await sink.abandon();
    const [crashed] = listAuditFiles(directory);
    const whole = lines(crashed ?? "");
    appendFileSync(crashed ?? "", '{"v":2,"seq":4,"time":"2026-12-0');
    const restarted = AuditFile.open({
      directory,
      node: "n1",
      auditKey,
      maxFileBytes: 64 * 1024 * 1024,
      checkpointEvery: 10,
      durability: "disk",
      syncIntervalMs: 1000,
    });
    await restarted.append(request(9));
    await restarted.close();
    const next = listAuditFiles(directory).at(-1) ?? "";
    expect(next).not.toBe(crashed);
    const lastWhole = whole.at(-1) ?? "";
    expect(lastWhole.length).toBeGreaterThan(100_000);
    expect(JSON.parse(lines(next)[0] ?? "{}")).toMatchObject({
      seq: (JSON.parse(lastWhole) as { seq: number }).seq + 1,
      prev: hashLine(lastWhole),
    });
  });

  it("a seal and an unseal are checkpoints: only the lines since the node sealed go without a MAC", async () => {
    // The node starts sealed (no key), unseals, serves, seals, and stops while sealed.
    const { directory, sink } = openSink({ auditKey: null, checkpointEvery: 100 });
    const kinds = (file: string) =>
      lines(file).map((line) => {
        const parsed = JSON.parse(line);
        return parsed.type === "checkpoint"
          ? "checkpoint"
          : parsed.type === "header"
            ? "header"
            : parsed.requestId;
      });
    // A call: its request and response entries.
    const served = async (target: AuditFile, i: number) => {
      await target.append(request(i));
      await target.append(request(i, { type: "response", outcome: "ok", code: "OK" }));
    };
    await served(sink, 1);
    sink.setAuditKey(auditKey);
    await served(sink, 2);
    sink.setAuditKey(null);
    await served(sink, 3);
    await sink.close();
    const [first = ""] = listAuditFiles(directory);
    // The unseal's checkpoint (under the new key) covers what came before it, the seal's (under
    // the key being forgotten) what came before the seal.
    expect(kinds(first)).toEqual(["header", "r1", "r1", "checkpoint", "r2", "r2", "checkpoint", "r3", "r3"]);
    expect(verifyAuditFiles([first], auditKey)).toMatchObject({
      checkpoints: 2,
      closed: false,
      afterLastCheckpoint: 2,
      problems: [expect.stringMatching(/^the last file does not end with a closing checkpoint/)],
    });
    // The next start unseals: its checkpoint covers, through the chain, the line the last run
    // wrote while sealed, and its close ends the trail.
    const restarted = AuditFile.open({
      directory,
      node: "n1",
      auditKey: null,
      maxFileBytes: 1024 * 1024,
      checkpointEvery: 100,
      durability: "disk",
      syncIntervalMs: 1000,
    });
    restarted.setAuditKey(auditKey);
    await served(restarted, 4);
    await restarted.close();
    const [, second = ""] = listAuditFiles(directory);
    expect(kinds(second)).toEqual(["header", "checkpoint", "r4", "r4", "checkpoint"]);
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey)).toMatchObject({
      checkpoints: 4,
      closed: true,
      afterLastCheckpoint: 0,
      problems: [],
    });
    // The MACs are the key's: with another, every checkpoint is forged.
    const forged = verifyAuditFiles(listAuditFiles(directory), new Uint8Array(32)).problems;
    expect(forged.filter((problem) => /checkpoint/.test(problem))).toHaveLength(4);
  });

  it("counts a request still without its response as in flight while the trail is open", async () => {
    const { directory, sink } = openSink({ checkpointEvery: 1000 });
    await sink.append(request(1));
    await sink.append(request(1, { type: "response", outcome: "ok", code: "OK" }));
    await sink.append(request(2));
    const running = verifyAuditFiles(listAuditFiles(directory), auditKey);
    expect(running.unanswered).toEqual(["r2"]);
    expect(running.problems).toEqual([
      expect.stringMatching(/^the last file does not end with a closing checkpoint/),
    ]);
    // Said to be a running node's, its open end is no problem: the lines after the last
    // checkpoint are counted.
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey, { live: true })).toMatchObject({
      problems: [],
      unanswered: ["r2"],
      closed: false,
      afterLastCheckpoint: 4,
    });
    // Closed with the request still unanswered, the trail has lost an entry.
    await sink.close();
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey).problems).toEqual([
      "request r2 has no response entry (one was lost)",
    ]);
  });

  it("a running trail whose last line is a periodic checkpoint is not taken for a closed one", async () => {
    // A Watch's request entry stays open as long as its stream; a periodic checkpoint may then be
    // the last line for a while. Before closing checkpoints said so, the stream was reported lost.
    const { directory, sink } = openSink({ checkpointEvery: 5 });
    await sink.append(request(0, { method: "/strongroom.v1.Secrets/Watch" }));
    for (let i = 1; i <= 2; i++) {
      await sink.append(request(i));
      await sink.append(request(i, { type: "response", outcome: "ok", code: "OK" }));
    }
    const [file] = listAuditFiles(directory);
    expect(JSON.parse(lines(file ?? "").at(-1) ?? "{}")).toMatchObject({ type: "checkpoint" });
    expect(verifyAuditFiles([file ?? ""], auditKey, { live: true })).toMatchObject({
      problems: [],
      unanswered: ["r0"],
      closed: false,
      afterLastCheckpoint: 0,
    });
    await sink.close();
  });

  it("a closing flag taken off or put on is caught by the key; a format-1 trail's last checkpoint still closes it", async () => {
    const directory = await writeTrail(3, { checkpointEvery: 100 });
    const [file] = listAuditFiles(directory);
    const original = lines(file ?? "");
    const last = JSON.parse(original.at(-1) ?? "{}") as Record<string, unknown>;
    delete last.closed;
    writeFileSync(file ?? "", `${[...original.slice(0, -1), JSON.stringify(last)].join("\n")}\n`);
    expect(verifyAuditFiles([file ?? ""], auditKey).problems).toEqual([
      "audit-000001.jsonl:8: the checkpoint's MAC does not match (the chain before it was rewritten, or its closing flag changed)",
    ]);
    // Without the key, a trail without its closing checkpoint looks cut short.
    expect(verifyAuditFiles([file ?? ""], null).problems).toEqual([
      expect.stringMatching(/^the last file does not end with a closing checkpoint/),
    ]);

    // Format 1 (before closing checkpoints): its checkpoint at the end was the closing one.
    const legacy: string[] = [];
    let prev = "";
    // The last response entry left out: lost, since the trail was closed.
    for (const line of original.filter((text) => !(text.includes('"r2"') && text.includes('"response"')))) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      entry.v = 1;
      entry.seq = legacy.length + 1;
      delete entry.closed;
      if (legacy.length > 0) entry.prev = prev;
      if (entry.type === "checkpoint") entry.mac = checkpointMac(auditKey, entry.seq as number, prev);
      const text = JSON.stringify(entry);
      legacy.push(text);
      prev = hashLine(text);
    }
    writeFileSync(file ?? "", `${legacy.join("\n")}\n`);
    const verified = verifyAuditFiles([file ?? ""], auditKey);
    expect(verified.closed).toBe(true);
    expect(verified.problems).toEqual(["request r2 has no response entry (one was lost)"]);
  });

  it("holds a sensitive value only as its HMAC under the audit key", async () => {
    const { directory, sink } = openSink();
    const marker = "value-marker-5b1e";
    await sink.append(request(1, { hashed: { value: hashSensitive(auditKey, marker) } }));
    await sink.close();
    const text = listAuditFiles(directory)
      .map((file) => readFileSync(file, "utf8"))
      .join("");
    expect(text).not.toContain(marker);
    expect(text).toContain(hashSensitive(auditKey, marker));
  });
});

describe('durability "os"', () => {
  it("writes without O_DSYNC, and syncs a file in the background only while it is written", async () => {
    const syncs: (Error | null)[] = [];
    const { directory, sink } = openSink({
      durability: "os",
      syncIntervalMs: 20,
      maxFileBytes: 4096,
      onSync: (_seconds, error) => syncs.push(error),
    });
    const answered = async (i: number) => {
      await sink.append(request(i));
      await sink.append(request(i, { type: "response", outcome: "ok", code: "OK" }));
    };
    for (let i = 0; i < 40; i++) await answered(i);
    // Rotated (each new file synced as it is opened), and the open one written without O_DSYNC.
    expect(listAuditFiles(directory).length).toBeGreaterThan(1);
    expect(openFlags(listAuditFiles(directory).at(-1) ?? "") & constants.O_DSYNC).toBe(0);
    await eventually(() => syncs.length > 0, 5000);
    // A sync that began before the last writes is followed by one more; wait until they have
    // stopped (no new sync for five intervals; a sink that kept syncing would fail here).
    let seen = -1;
    await eventually(async () => {
      const before = syncs.length;
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = syncs.length;
      return seen === before;
    }, 5000);
    expect(syncs.every((error) => error === null)).toBe(true);
    // Idle for ten intervals: nothing to sync, so no sync.
    const idle = seen;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(syncs.length).toBe(idle);
    await answered(40);
    await eventually(() => syncs.length > idle, 5000);
    await sink.close();
    expect(verifyAuditFiles(listAuditFiles(directory), auditKey)).toMatchObject({
      entries: 82,
      problems: [],
    });
  });

  it("keeps every acknowledged entry through a SIGKILL of the process", { timeout: 60_000 }, async () => {
    const seed = Number(process.env.AUDIT_KILL_SEED ?? 20261129);
    console.log(`audit kill test: seed ${seed} (AUDIT_KILL_SEED replays it)`);
    const random = new SeededRandom(seed);
    const writer = await bundleChild(
      new URL("./fixtures/audit-writer.ts", import.meta.url),
      "audit-writer",
      "packages",
    );
    for (let run = 0; run < 3; run++) {
      const directory = join(root, `killed-${run}`);
      // Killed once it has acknowledged this many entries (and maybe a few more meanwhile).
      const killAfter = 50 + random.nextInt(1500);
      const acknowledged = await new Promise<number>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [writer, directory, Buffer.from(auditKey).toString("hex"), "100000"],
          {
            stdio: ["ignore", "pipe", "pipe"],
          },
        );
        let last = -1;
        let errors = "";
        child.stderr.on("data", (chunk: Buffer) => {
          errors += chunk.toString();
        });
        createInterface({ input: child.stdout }).on("line", (line) => {
          last = Number(line.split(" ")[1]);
          if (last + 1 === killAfter) child.kill("SIGKILL");
        });
        child.on("close", (_code, signal) =>
          signal === "SIGKILL"
            ? resolve(last + 1)
            : reject(new Error(`the writer ended by itself: ${errors}`)),
        );
      });
      expect(acknowledged, `run ${run} (seed ${seed})`).toBeGreaterThanOrEqual(killAfter);
      const report = verifyAuditFiles(listAuditFiles(directory), auditKey);
      // Every acknowledged entry, in order, the chain intact; only the end is open, as a crash leaves it.
      expect(report.problems, `run ${run} (seed ${seed})`).toEqual([
        expect.stringMatching(/^the last file does not end with a closing checkpoint/),
      ]);
      expect(report.entries).toBeGreaterThanOrEqual(acknowledged);
      expect(report.unanswered.slice(0, acknowledged)).toEqual(
        Array.from({ length: acknowledged }, (_, i) => `r${i}`),
      );
    }
  });
});

describe("verify catches tampering", () => {
  const tamper = async (change: (files: string[]) => void): Promise<readonly string[]> => {
    const directory = await writeTrail(30, { maxFileBytes: 2048 });
    const files = listAuditFiles(directory);
    change(files);
    return verifyAuditFiles(listAuditFiles(directory), auditKey).problems;
  };
  const rewrite = (file: string, edit: (all: string[]) => string[]) =>
    writeFileSync(file, `${edit(lines(file)).join("\n")}\n`);

  it("an edited line", async () => {
    const problems = await tamper((files) =>
      rewrite(files[0] ?? "", (all) =>
        all.map((line, i) => (i === 3 ? line.replace('"alice"', '"mallory"') : line)),
      ),
    );
    expect(problems[0]).toMatch(/^audit-000001\.jsonl:5: the previous line \(entry 4\) was edited/);
  });

  it("a deleted line", async () => {
    const problems = await tamper((files) => rewrite(files[0] ?? "", (all) => all.filter((_, i) => i !== 3)));
    expect(problems[0]).toMatch(/^audit-000001\.jsonl:4: entries 4 are missing \(deleted\)/);
  });

  it("two lines swapped", async () => {
    const problems = await tamper((files) =>
      rewrite(files[0] ?? "", (all) => {
        const swapped = [...all];
        [swapped[3], swapped[4]] = [all[4] ?? "", all[3] ?? ""];
        return swapped;
      }),
    );
    expect(problems[0]).toMatch(/^audit-000001\.jsonl:4: entries 4 are missing|reordered/);
    expect(problems.some((problem) => /reordered or duplicated/.test(problem))).toBe(true);
  });

  it("a deleted file in the middle", async () => {
    const problems = await tamper((files) => unlinkSync(files[1] ?? ""));
    expect(problems[0]).toMatch(
      /^audit-000003\.jsonl:1: entries \d+-\d+ are missing \(deleted, or a whole file\)/,
    );
  });

  it("a file rewritten with a consistent chain: only the key reveals it", async () => {
    const directory = await writeTrail(12, { checkpointEvery: 100 });
    const [file] = listAuditFiles(directory);
    // Rebuild the whole chain with one entry changed, as an attacker without the key would.
    const forged: string[] = [];
    let prev = "";
    for (const line of lines(file ?? "")) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.requestId === "r5") entry.identity = "mallory";
      if (forged.length > 0) entry.prev = prev;
      if (entry.type === "checkpoint")
        entry.mac = checkpointMac(new Uint8Array(32), entry.seq as number, prev);
      const text = JSON.stringify(entry);
      forged.push(text);
      prev = hashLine(text);
    }
    writeFileSync(file ?? "", `${forged.join("\n")}\n`);
    expect(verifyAuditFiles([file ?? ""], null).problems).toEqual([]);
    expect(verifyAuditFiles([file ?? ""], auditKey).problems).toEqual([
      "audit-000001.jsonl:26: the checkpoint's MAC does not match (the chain before it was rewritten, or its closing flag changed)",
    ]);
  });

  it("a truncated end: a cut line, and whole entries after the last checkpoint", async () => {
    const cut = await tamper((files) => {
      const last = files.at(-1) ?? "";
      truncateSync(last, readFileSync(last).length - 10);
    });
    expect(cut[0]).toMatch(/the last line is incomplete/);
    const dropped = await tamper((files) => rewrite(files.at(-1) ?? "", (all) => all.slice(0, -1)));
    expect(dropped).toEqual([
      "the last file does not end with a closing checkpoint: entries after the last checkpoint may have been cut off (or the node is running: --live, or crashed, or stopped while sealed: a sealed node has no audit key, and its next unsealed start's first checkpoint covers them)",
    ]);
    const appended = await tamper((files) => appendFileSync(files.at(-1) ?? "", "not json\n"));
    expect(appended[0]).toMatch(/not a JSON line \(edited or damaged\)/);
  });
});

describe("strongroom audit verify", () => {
  it("says intact (exit 0), names each problem (exit 1), and refuses a missing file (exit 2)", async () => {
    const cli = await bundledCli();
    const verify = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [cli, "audit", "verify", ...args], (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? null), stdout, stderr }),
        );
      });
    const directory = await writeTrail(12, { checkpointEvery: 5 });
    const keyFile = join(directory, "audit.key");
    writeFileSync(keyFile, Buffer.from(auditKey).toString("hex"));
    const files = listAuditFiles(directory);
    const intact = await verify([...files, "--key-file", keyFile]);
    expect(intact).toMatchObject({ code: 0, stdout: "1 file(s), 24 entries, 5 checkpoints: intact\n" });
    // A node's audit directory stands for its files, oldest first.
    expect(await verify([directory, "--key-file", keyFile])).toMatchObject({
      code: 0,
      stdout: "1 file(s), 24 entries, 5 checkpoints: intact\n",
    });
    const empty = join(directory, "empty");
    mkdirSync(empty);
    expect(await verify([empty])).toMatchObject({
      code: 2,
      stderr: `strongroom audit verify: ${empty} holds no audit file (audit-NNNNNN.jsonl)\n`,
    });
    writeFileSync(files[0] ?? "", readFileSync(files[0] ?? "", "utf8").replace('"r3"', '"r33"'));
    const tampered = await verify(files);
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toMatch(/^audit-000001\.jsonl:10: the previous line \(entry 9\) was edited/);
    // The edited request id also leaves its response without a request, and itself unanswered.
    expect(tampered.stdout).toContain(
      "audit-000001.jsonl:10: a response to request r3, whose request entry is missing",
    );
    expect(tampered.stdout).toContain("request r33 has no response entry (one was lost)");
    expect(tampered.stdout).toMatch(/\(MACs not checked: no --key-file\): 3 problem\(s\)\n$/);
    // A running node's trail: its open end is a problem unless --live says so.
    const { directory: running, sink } = openSink({ checkpointEvery: 1000 });
    await sink.append(request(1, { method: "/strongroom.v1.Secrets/Watch" }));
    expect((await verify(listAuditFiles(running))).code).toBe(1);
    expect(await verify([...listAuditFiles(running), "--live"])).toMatchObject({
      code: 0,
      stdout:
        "2 line(s) after the last checkpoint: chained, but no checkpoint's MAC covers them yet\n" +
        "1 request(s) without a response entry yet (in flight when the trail was read, or at a crash)\n" +
        "1 file(s), 1 entries, 0 checkpoints (MACs not checked: no --key-file): intact\n",
    });
    await sink.close();
    expect(await verify([join(directory, "nope.jsonl")])).toMatchObject({
      code: 2,
      stderr: `strongroom audit verify: ${join(directory, "nope.jsonl")} does not exist\n`,
    });
  }, 60_000);
});
