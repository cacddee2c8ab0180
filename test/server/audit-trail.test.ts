// The audit trail's sinks, real ones: a directory of files and a collector on a Unix socket. An
// entry goes to both; with the collector down the trail goes on through the file and counts the
// socket as failing, and dials again once it is back; with the directory broken the collector alone
// takes the entries; with neither, the call is refused (AUDIT_UNAVAILABLE). With durability "os"
// the files are synced in the background, and each sync is timed. A read runs while its request
// entry is written and is answered only after it; a call that changes something runs after it.
// A trail abandoned on a fatal stop waits for a write a full disk cut short, so no line is torn.

import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, expect, it } from "vitest";
import { hashSensitive } from "../../server/audit/audit-chain.js";
import { listAuditFiles } from "../../server/audit/audit-file.js";
import { AuditTrail, type AuditTrailOptions, deriveAuditKey } from "../../server/audit/audit-trail.js";
import { verifyAuditFiles } from "../../server/audit/audit-verify.js";
import { NodeError } from "../../server/errors.js";
import type { RequestContext } from "../../server/request.js";
import { eventually } from "../support/eventually.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-audit-trail-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A collector on a Unix socket that keeps the lines it receives; it can stop reading a while. */
function collector(
  path: string,
): Promise<{ lines: string[]; pause: () => void; resume: () => void; stop: () => Promise<void> }> {
  const lines: string[] = [];
  const connections = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections.add(socket);
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      lines.push(...parts);
    });
    socket.on("close", () => connections.delete(socket));
  });
  return new Promise((resolve) =>
    server.listen(path, () =>
      resolve({
        lines,
        pause: () => {
          for (const socket of connections) socket.pause();
        },
        resume: () => {
          for (const socket of connections) socket.resume();
        },
        stop: () =>
          new Promise<void>((done) => {
            for (const socket of connections) socket.destroy();
            server.close(() => done());
          }),
      }),
    ),
  );
}

/** A trail of node n1, unsealed, durable on disk; `options` say where it writes and what differs. */
function trailWith(options: Partial<AuditTrailOptions> & Pick<AuditTrailOptions, "directories">): AuditTrail {
  return new AuditTrail({
    node: "n1",
    maxFileBytes: 1 << 20,
    checkpointEvery: 100,
    durability: "disk",
    syncIntervalMs: 1000,
    rootKey: () => new Uint8Array(32).fill(9),
    registry: new Registry(),
    ...options,
  });
}

const context = (method: string): RequestContext => ({
  method,
  identity: "alice",
  token: null,
  answerBy: performance.now() + 10_000,
  forwardedBy: null,
  authorization: { caller: null, tokenUseSpent: false },
});

it("writes to a file and a socket collector; goes on with either one; refuses with neither", async () => {
  const socketPath = join(root, "collector.sock");
  const directory = join(root, "files");
  const registry = new Registry();
  const changes: string[] = [];
  const trail = trailWith({
    directories: [directory],
    sockets: [`unix:${socketPath}`],
    registry,
    onSinkChange: (sink, error) => changes.push(`${sink}: ${error === null ? "writes again" : "failed"}`),
  });
  const call = async (path: string) => {
    const finish = await trail.begin(context("/strongroom.v1.Secrets/Get"), { path });
    await finish(null);
  };

  let running = await collector(socketPath);
  await call("app/one");
  await eventually(() => running.lines.length === 2, 5000);
  const first = JSON.parse(running.lines[0] ?? "{}") as Record<string, unknown>;
  expect(first).toMatchObject({ node: "n1", seq: 1, type: "request", identity: "alice", path: "app/one" });
  expect(JSON.parse(running.lines[1] ?? "{}")).toMatchObject({ seq: 2, type: "response", outcome: "ok" });
  // The file's durable writes, counted: the request entry, then (once the call ended) its response.
  expect(await registry.metrics()).toMatch(/^strongroom_audit_write_entries_sum 2$/m);
  expect(await registry.metrics()).toMatch(/^strongroom_audit_write_entries_count 2$/m);
  // Each of them timed, under the directory's name.
  expect(await registry.metrics()).toMatch(
    new RegExp(`^strongroom_audit_write_seconds_count\\{sink="${directory}"\\} 2$`, "m"),
  );

  // The collector goes away: the file takes the entries, the socket counts as failing, once.
  await running.stop();
  await call("app/two");
  expect(trail.failingSinks()).toEqual([`unix:${socketPath}`]);
  expect(changes).toEqual([`unix:${socketPath}: failed`]);
  expect(await registry.metrics()).toMatch(
    new RegExp(
      `strongroom_audit_sink_failures_total\\{sink="unix:${socketPath.replaceAll("/", "\\/")}"\\} [1-9]`,
    ),
  );

  // It comes back: the next entry reaches it, numbered after the two it missed (app/two's request
  // and response), so the collector sees what it lost as a gap.
  rmSync(socketPath, { force: true });
  running = await collector(socketPath);
  await call("app/three");
  await eventually(() => running.lines.some((line) => line.includes("app/three")), 5000);
  expect(trail.failingSinks()).toEqual([]);
  expect(changes).toEqual([`unix:${socketPath}: failed`, `unix:${socketPath}: writes again`]);
  expect(JSON.parse(running.lines[0] ?? "{}")).toMatchObject({ seq: 5, type: "request", path: "app/three" });

  // The directory breaks (a file where it should be): the collector alone takes the entries.
  await trail.close();
  rmSync(directory, { recursive: true, force: true });
  writeFileSync(directory, "not a directory");
  await call("app/four");
  expect(trail.failingSinks()).toEqual([directory]);
  await eventually(() => running.lines.some((line) => line.includes("app/four")), 5000);

  // Neither: refused.
  await running.stop();
  const refusal = await trail
    .begin(context("/strongroom.v1.Secrets/Get"), { path: "app/five" })
    .catch((e) => e);
  expect(refusal).toBeInstanceOf(NodeError);
  expect((refusal as NodeError).code).toBe("AUDIT_UNAVAILABLE");
  await trail.close();
});

it("records a caller's token as HMAC(audit key, token) under the key of the moment: a new root key, a seal", async () => {
  const directory = join(root, "token-hashes");
  let rootKey: Uint8Array | null = new Uint8Array(32).fill(1);
  const trail = trailWith({ directories: [directory], rootKey: () => rootKey });
  const tokenA = `sr.${"a".repeat(43)}`;
  const tokenB = `sr.${"b".repeat(43)}`;
  /** The hashed token of the request entry of one call made with `token`. */
  const recorded = async (token: string): Promise<unknown> => {
    const finish = await trail.begin(
      { ...context("/strongroom.v1.Secrets/Get"), token },
      { path: "app/one" },
    );
    await finish(null);
    const lines = readdirSync(directory)
      .sort()
      .flatMap((name) => readFileSync(join(directory, name), "utf8").split("\n"))
      .filter((line) => line.includes('"type":"request"'));
    return (JSON.parse(lines.at(-1) ?? "{}") as { hashed?: { token?: unknown } }).hashed?.token;
  };
  const under = (key: Uint8Array, token: string) => hashSensitive(deriveAuditKey(key), token);

  expect(await recorded(tokenA)).toBe(under(new Uint8Array(32).fill(1), tokenA));
  expect(await recorded(tokenA)).toBe(under(new Uint8Array(32).fill(1), tokenA));
  expect(await recorded(tokenB)).toBe(under(new Uint8Array(32).fill(1), tokenB));
  // A new root key (a rekey): the same token is recorded under the new audit key at once.
  rootKey = new Uint8Array(32).fill(2);
  expect(await recorded(tokenA)).toBe(under(new Uint8Array(32).fill(2), tokenA));
  // Sealed: no key, so no hash.
  rootKey = null;
  expect(await recorded(tokenA)).toBe("[redacted]");
  // Unsealed again; and after forgetKeys (what a seal calls), hashed afresh under the key.
  rootKey = new Uint8Array(32).fill(2);
  expect(await recorded(tokenA)).toBe(under(new Uint8Array(32).fill(2), tokenA));
  trail.forgetKeys();
  expect(await recorded(tokenB)).toBe(under(new Uint8Array(32).fill(2), tokenB));
  await trail.close();
});

it('with durability "os", syncs a written file in the background and times each sync by directory', async () => {
  const directory = join(root, "os-files");
  const registry = new Registry();
  const trail = trailWith({ directories: [directory], durability: "os", syncIntervalMs: 20, registry });
  const finish = await trail.begin(context("/strongroom.v1.Secrets/Get"), { path: "app/one" });
  await finish(null);
  const syncs = new RegExp(
    `^strongroom_audit_background_sync_seconds_count\\{sink="${directory}"\\} ([1-9]\\d*)$`,
    "m",
  );
  await eventually(async () => syncs.test(await registry.metrics()), 5000);
  // The calls' writes are counted as before; they did not wait for the disk.
  expect(await registry.metrics()).toMatch(/^strongroom_audit_write_entries_sum 2$/m);
  await trail.close();
});

it("runs a call while its request entry is written, lets it act only after, and answers after it", async () => {
  const directory = join(root, "alongside");
  const trail = trailWith({ directories: [directory] });
  const audited = trail.interceptor();
  const entries = () =>
    (existsSync(directory) ? readdirSync(directory) : [])
      .filter((name) => name.endsWith(".jsonl"))
      .flatMap((name) => readFileSync(join(directory, name), "utf8").split("\n"))
      .filter((line) => line.includes('"requestId"'))
      .map((line) => JSON.parse(line) as { type: string; path?: string; outcome?: string; code?: string });
  const requestWritten = (path: string) =>
    entries().some((entry) => entry.type === "request" && entry.path === path);
  /**
   * Runs one call through the interceptor. Its work notes whether its request entry was in the
   * file when it began, and when the `actAfter` it was handed settled (null: it was handed none).
   */
  const run = async (method: string, path: string, readOnly: boolean, work: () => Promise<unknown>) => {
    let entryWrittenFirst: boolean | null = null;
    let entryWrittenWhenMayAct: boolean | null = null;
    const answer = await audited(
      context(method),
      { path },
      async (actAfter) => {
        entryWrittenFirst = requestWritten(path);
        if (actAfter !== undefined) {
          await actAfter;
          entryWrittenWhenMayAct = requestWritten(path);
        }
        return work();
      },
      { readOnly },
    ).then(
      (response) => ({ response }),
      (error: unknown) => ({ error }),
    );
    return { answer, entryWrittenFirst, entryWrittenWhenMayAct };
  };

  // A read: run before its request entry is in the file, with nothing to await; answered once
  // both entries are written, together, after it.
  const read = await run("/strongroom.v1.Secrets/Get", "app/read", true, async () => "the value");
  expect(read).toEqual({
    answer: { response: "the value" },
    entryWrittenFirst: false,
    entryWrittenWhenMayAct: null,
  });
  expect(
    entries()
      .filter((entry) => entry.path === "app/read")
      .map((entry) => entry.type),
  ).toEqual(["request", "response"]);
  // A write: under way (its checks, a forward) before its request entry is in the file, but what
  // it must await before acting here settles only once the entry is written.
  const write = await run("/strongroom.v1.Secrets/Put", "app/write", false, async () => ({ version: 1 }));
  expect(write).toEqual({
    answer: { response: { version: 1 } },
    entryWrittenFirst: false,
    entryWrittenWhenMayAct: true,
  });
  // A read that fails: its error is the answer, and its response entry says so.
  const failed = await run("/strongroom.v1.Secrets/Get", "app/missing", true, async () => {
    throw new NodeError("NOT_FOUND", "no secret at app/missing");
  });
  expect((failed.answer as { error: NodeError }).error.code).toBe("NOT_FOUND");
  expect(entries().find((entry) => entry.path === "app/missing" && entry.type === "response")).toMatchObject({
    outcome: "error",
    code: "NOT_FOUND",
  });

  // No sink can take entries (a file where the directory was). The first writes (the sink not
  // known to fail yet) went on. One run here awaited what it had to before acting, which failed
  // with the refusal: refused, not done. One forwarded to the leader did not wait (the leader may
  // have done it): refused as such, so that the client does not take it as not done. Once the
  // sink is known to fail, a write does not begin at all, while a read still runs (it changes
  // nothing), and is refused.
  await trail.close();
  rmSync(directory, { recursive: true, force: true });
  writeFileSync(directory, "not a directory");
  const attempt = async (method: string, readOnly: boolean, forwarded = false, through = audited) => {
    let began = false;
    let mayAct: unknown = null;
    const answer = await through(
      context(method),
      { path: "app/refused" },
      async (actAfter) => {
        began = true;
        if (forwarded) return "done by the leader";
        mayAct = await actAfter?.then(
          () => "acted",
          (error: unknown) => error,
        );
        if (mayAct instanceof Error) throw mayAct;
        return "done";
      },
      { readOnly },
    ).catch((error: unknown) => error);
    return { began, mayAct, refusal: (answer as NodeError).code };
  };
  const firstWrite = await attempt("/strongroom.v1.Secrets/Put", false);
  expect(firstWrite).toMatchObject({ began: true, refusal: "AUDIT_UNAVAILABLE" });
  expect((firstWrite.mayAct as NodeError).code).toBe("AUDIT_UNAVAILABLE");
  // Through a second trail on the same path: this one knows its sink fails now, and waits.
  const otherTrail = trailWith({ directories: [directory] });
  const forwarded = await attempt("/strongroom.v1.Secrets/Put", false, true, otherTrail.interceptor());
  expect(forwarded).toEqual({ began: true, mayAct: null, refusal: "AUDIT_FAILED_AFTER_FORWARD" });
  await otherTrail.close();
  expect(await attempt("/strongroom.v1.Secrets/Put", false)).toEqual({
    began: false,
    mayAct: null,
    refusal: "AUDIT_UNAVAILABLE",
  });
  expect(await attempt("/strongroom.v1.Secrets/Get", true)).toEqual({
    began: true,
    mayAct: undefined,
    refusal: "AUDIT_UNAVAILABLE",
  });
  await trail.close();
});

it("writes a read's request and response entries in one write to disk, not one after the other", async () => {
  const directory = join(root, "read-once");
  const registry = new Registry();
  const trail = trailWith({ directories: [directory], registry });
  const audited = trail.interceptor();
  const writes = async () => {
    const text = await registry.metrics();
    return Number(/^strongroom_audit_write_seconds_count\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  for (let read = 1; read <= 3; read++) {
    const answer = await audited(
      context("/strongroom.v1.Secrets/Get"),
      { path: `app/read-${read}` },
      async () => "v",
      {
        readOnly: true,
      },
    );
    expect(answer).toBe("v");
    expect(await writes()).toBe(read);
  }
  // A write's request entry goes first, alone: it must be on disk before the write acts.
  await audited(context("/strongroom.v1.Secrets/Put"), { path: "app/write" }, async () => ({ version: 1 }), {
    readOnly: false,
  });
  expect(await writes()).toBe(5);
  await trail.close();
});

it("withholds the answer of a write done when no sink takes its response entry: outcome unknown, not AUDIT_UNAVAILABLE", async () => {
  for (const sinkFailedBefore of [false, true]) {
    const socketPath = join(root, `gone-after-request-${sinkFailedBefore}.sock`);
    const registry = new Registry();
    const trail = trailWith({ directories: [], sockets: [`unix:${socketPath}`], registry });
    if (sinkFailedBefore) {
      // No collector yet: the first write is refused, and the sink counts as failing, so the
      // next write waits for its request entry before anything (the interceptor's other path).
      const refused = await audited(trail)("app/before").catch((error: unknown) => error);
      expect((refused as NodeError).code).toBe("AUDIT_UNAVAILABLE");
    }
    const listening = await collector(socketPath);
    const answer = await audited(trail)("app/done", async () => {
      // Done once its request entry is taken; then the collector goes away.
      await eventually(() => listening.lines.some((line) => line.includes('"app/done"')), 2000);
      await listening.stop();
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { version: 1 };
    }).catch((error: unknown) => error);
    expect((answer as NodeError).code).toBe("AUDIT_FAILED_AFTER_ACT");
    expect(await registry.metrics()).toMatch(/^strongroom_audit_responses_lost_total 1$/m);
    await trail.close();
  }
});

/** Runs a write through `trail`'s interceptor; `work` is what it does once its entry is written. */
function audited(trail: AuditTrail) {
  const interceptor = trail.interceptor();
  return (path: string, work: () => Promise<unknown> = async () => ({ version: 1 })) =>
    interceptor(
      context("/strongroom.v1.Secrets/Put"),
      { path },
      async (actAfter) => {
        await actAfter;
        return work();
      },
      { readOnly: false },
    );
}

it("waits for a write's request entry before it goes on while a sink takes nothing (a hung collector), and counts the sink as stalled", async () => {
  const socketPath = join(root, "stalling.sock");
  const stalling = await collector(socketPath);
  const registry = new Registry();
  const trail = trailWith({
    directories: [],
    sockets: [`unix:${socketPath}`],
    stalledAfterMs: 100,
    registry,
  });
  const stalledSinks = async () =>
    Number(/^strongroom_audit_sinks_stalled (\d+)$/m.exec(await registry.metrics())?.[1] ?? "-1");
  const audited = trail.interceptor();
  /** Starts a write through the interceptor; says whether it has begun, and its answer. */
  const write = (path: string) => {
    let began = false;
    const answer = audited(
      context("/strongroom.v1.Secrets/Put"),
      { path },
      async () => {
        began = true;
        return "done";
      },
      { readOnly: false },
    );
    return { began: () => began, answer };
  };
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  // Keeping up: a write goes on at once.
  const first = write("app/first");
  expect(first.began()).toBe(true);
  expect(await first.answer).toBe("done");
  expect(await stalledSinks()).toBe(0);

  // The collector stops reading: once the socket's buffers are full, entries stay outstanding.
  stalling.pause();
  let taken = 0;
  const backlog = Array.from({ length: 5000 }, (_, i) =>
    trail
      .write({ type: "request", requestId: `backlog-${i}`, identity: "alice", method: "/backlog" })
      .then(() => {
        taken += 1;
      }),
  );
  // Until the socket's buffers are full: the sink has taken nothing for 200 ms and counts as
  // stalled. (A fixed wait failed on a slow machine, where the backlog was still moving.)
  let seen = -1;
  for (const giveUpAt = Date.now() + 10_000; taken !== seen || trail.stalledSinks().length === 0; ) {
    if (Date.now() > giveUpAt) throw new Error(`the sink never stalled: it took ${taken} entries`);
    seen = taken;
    await sleep(200);
  }
  expect(taken).toBeLessThan(backlog.length);
  const held = write("app/held");
  await sleep(50);
  expect(held.began()).toBe(false);
  expect(await stalledSinks()).toBe(1);
  expect(trail.stalledSinks()).toEqual([`unix:${socketPath}`]);

  // Reading again: the backlog drains, the held write goes on and is answered.
  stalling.resume();
  expect(await held.answer).toBe("done");
  expect(held.began()).toBe(true);
  await Promise.all(backlog);
  await eventually(() => stalling.lines.some((line) => line.includes('"path":"app/held"')), 5000);
  const after = write("app/after");
  expect(after.began()).toBe(true);
  expect(await after.answer).toBe("done");
  expect(await stalledSinks()).toBe(0);
  await trail.close();
  await stalling.stop();
});

it("abandoned on a fatal stop: waits for a write a full disk cut short, leaves whole lines only, and takes nothing more", async () => {
  const entry = (i: number) => ({
    type: "request" as const,
    requestId: `r${i}`,
    identity: "alice",
    method: "/strongroom.v1.Secrets/Put",
    path: `app/${"k".repeat(400)}${i}`,
  });
  // The stop comes at a different moment of the write each round: before it starts, while the
  // kernel takes its first pages, after it refused the rest.
  for (let round = 0; round < 8; round++) {
    // A tmpfs of its own (the test runs as root, as CI does), filled but for one page.
    const mount = join(root, `full-disk-${round}`);
    mkdirSync(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mount]);
    try {
      const directory = join(mount, "audit");
      const trail = trailWith({ directories: [directory] });
      await trail.write(entry(0));
      const filler = join(mount, "filler");
      try {
        writeFileSync(filler, Buffer.alloc(128 * 1024));
      } catch {
        // ENOSPC: the mount is full, which is the point; the file holds what fitted.
      }
      truncateSync(filler, statSync(filler).size - 4096);

      // About 20 KiB in one write (they arrive in one turn) where a page and a bit are free: the
      // kernel takes the first pages, then refuses the rest.
      const written = Array.from({ length: 40 }, (_, i) =>
        trail.write(entry(i + 1)).then(() => "written", String),
      );
      for (let turn = 0; turn < round % 4; turn++) await new Promise((resolve) => setImmediate(resolve));
      if (round >= 4) await new Promise((resolve) => setTimeout(resolve, round - 4));
      await trail.abandon();
      expect(new Set(await Promise.all(written))).toEqual(
        new Set(["NodeError: no audit sink could record the request, so it was not served"]),
      );
      const [file] = listAuditFiles(directory);
      if (file === undefined) throw new Error("no audit file");
      const text = readFileSync(file, "utf8");
      expect(text.endsWith("\n"), `round ${round}: a torn last line`).toBe(true);
      expect(text.trimEnd().split("\n").at(-1)).toContain('"requestId":"r0"');
      const verification = verifyAuditFiles([file], null);
      expect(verification.problems.filter((problem) => /incomplete|not a JSON line/.test(problem))).toEqual(
        [],
      );
      expect(verification.closed).toBe(false);

      // A call still arriving is refused, and opens no new file.
      await expect(trail.write(entry(99))).rejects.toThrow(/this node is stopping: it records no more calls/);
      expect(listAuditFiles(directory)).toEqual([file]);
    } finally {
      execFileSync("umount", ["-l", mount]);
    }
  }
});

it("writes an entry's fields in one order: the chain's, the call's, then its outcome's", async () => {
  const directory = join(root, "field-order");
  const trail = trailWith({ directories: [directory] });
  const forwarded: RequestContext = {
    ...context("/strongroom.v1.Secrets/Put"),
    token: `sr.${"c".repeat(43)}`,
    forwardedBy: "n2",
  };
  const put = await trail.begin(forwarded, { path: "app/order", value: Uint8Array.of(1, 2) });
  await put(null, { version: 3 });
  const denied = await trail.begin(forwarded, { path: "app/denied", value: Uint8Array.of(3) });
  await denied(
    new NodeError("PERMISSION_DENIED", "no policy grants update on app/denied", {
      auditDetail: "policy dev",
    }),
  );
  await trail.close();
  const entries = listAuditFiles(directory)
    .flatMap((file) => readFileSync(file, "utf8").split("\n"))
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.type === "request" || entry.type === "response");
  const chain = ["v", "seq", "time", "node", "prev"];
  const call = ["requestId", "identity", "method", "path", "capability", "forwardedBy", "hashed"];
  expect(entries.map((entry) => Object.keys(entry))).toEqual([
    [...chain, ...call, "type"],
    [...chain, ...call, "result", "type", "outcome", "code", "latencyMs"],
    [...chain, ...call, "type"],
    [...chain, ...call, "type", "outcome", "code", "reason", "detail", "latencyMs"],
  ]);
  expect(entries[1]).toMatchObject({ result: { version: 3 }, outcome: "ok", code: "OK" });
  expect(entries[3]).toMatchObject({
    outcome: "denied",
    code: "PERMISSION_DENIED",
    reason: "PERMISSION_DENIED",
    detail: "policy dev",
  });
  expect(Object.keys(entries[0]?.hashed as object)).toEqual(["value", "token"]);
});
