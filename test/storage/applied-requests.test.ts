// Request ids in the state machine: a write sent again with its id applies once and answers as the
// first did, whichever entry commits first; the same id with another request is refused; the ids
// are forgotten in the entries' own time and count, the same on every replica, across a restart
// and in a snapshot. Real LevelDB, values through a real barrier.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { RequestWindow } from "../../storage/state/applied-requests.js";
import {
  type ApplyResult,
  decodeCommand,
  encodeCommand,
  requestIdRetentionMs,
  requestIdsKept,
  type SecretCommand,
  validateRequestId,
} from "../../storage/state/index.js";
import {
  applyNext,
  putCommand,
  stateMachineStores,
  unsealedBarrier,
} from "./fixtures/state-machine-stores.js";

const stores = stateMachineStores("applied-requests");
const barrier = unsealedBarrier();
/** A stand-in for the server's keyed digest: what matters here is equal or not. */
const fingerprint = (asked: string) => new Uint8Array(createHash("sha256").update(asked).digest());

async function fixture(directory = stores.newDirectory()) {
  const machine = await stores.open(directory);
  const changes: number[] = [];
  machine.onApplied((applied) => changes.push(applied));
  const apply = (command: SecretCommand): Promise<ApplyResult> => applyNext(machine, command);
  /** A put with a request id; `asked` stands for the request's content (its digest). */
  const put = (
    path: string,
    value: string,
    id: string | null,
    options: { cas?: number | null; at?: number; asked?: string } = {},
  ) =>
    apply({
      ...putCommand(barrier, path, value, options),
      ...(id === null
        ? {}
        : { request: { id, fingerprint: fingerprint(options.asked ?? `${path}=${value}`) } }),
    });
  return { machine, apply, put, changes, directory };
}

describe("request ids in the state machine", () => {
  it("applies a retried put once and answers it as the first, at the first entry", async () => {
    const { machine, put, changes } = await fixture();
    expect(await put("app/db", "one", "req-1")).toEqual({ ok: true, version: 1 });
    // The retry may be in the log twice (the first on a deposed leader): neither applies again.
    expect(await put("app/db", "one", "req-1")).toEqual({ ok: true, version: 1, replayOf: 1 });
    expect(await put("app/db", "one", "req-1", { at: 5000 })).toEqual({ ok: true, version: 1, replayOf: 1 });
    expect((await machine.metadata("app/db"))?.current).toBe(1);
    // Only the first changed anything: watchers hear of it once.
    expect(changes).toEqual([1]);
    // The retried entries still move the applied index.
    expect(machine.appliedIndex()).toBe(3);
    // Without an id, the same put is a new version.
    expect(await put("app/db", "one", null)).toEqual({ ok: true, version: 2 });
  });

  it("answers a retry with the first one's failure, and a check-and-set retry with its success", async () => {
    const { put } = await fixture();
    expect(await put("k", "first", "a", { cas: 0 })).toEqual({ ok: true, version: 1 });
    // Sent again because its answer was lost: not CAS_MISMATCH (the secret is at 1 now), but the success.
    expect(await put("k", "first", "a", { cas: 0 })).toEqual({ ok: true, version: 1, replayOf: 1 });
    const refused = await put("k", "stale", "b", { cas: 0 });
    expect(refused).toMatchObject({ ok: false, code: "CAS_MISMATCH" });
    // A put at version 1 in between does not turn b's retry into a success.
    expect(await put("k", "second", "c", { cas: 1 })).toEqual({ ok: true, version: 2 });
    expect(await put("k", "stale", "b", { cas: 0 })).toEqual({ ...refused, replayOf: 3 });
  });

  it("refuses an id given again with another request, and still replays the first to its retry", async () => {
    const { machine, put } = await fixture();
    expect(await put("app/a", "one", "shared")).toEqual({ ok: true, version: 1 });
    expect(await put("app/a", "two", "shared")).toEqual({
      ok: false,
      code: "REQUEST_ID_REUSED",
      message:
        "request id shared was used by a different request (the write at revision 1); give each request its own id",
    });
    expect(await put("app/b", "one", "shared", { asked: "app/a=one" })).toMatchObject({
      ok: true,
      replayOf: 1,
    });
    expect((await machine.metadata("app/a"))?.current).toBe(1);
    expect(await machine.metadata("app/b")).toBeNull();
    expect(await put("app/a", "one", "shared")).toEqual({ ok: true, version: 1, replayOf: 1 });
  });

  it("forgets an id once the entries' own time is past its retention; a later retry applies anew", async () => {
    const { machine, put, apply } = await fixture();
    expect(await put("app/t", "v", "old", { at: 1000 })).toEqual({ ok: true, version: 1 });
    // An entry without an id, just inside the window, forgets nothing.
    await apply({ op: "kv.delete", path: "app/t", versions: [], at: 1000 + requestIdRetentionMs });
    expect(await put("app/t", "v", "old", { at: 1000 + requestIdRetentionMs })).toMatchObject({
      replayOf: 1,
    });
    // One past it forgets the id (its time is the entry's, not this machine's clock).
    await apply({ op: "kv.undelete", path: "app/t", versions: [1], at: 1001 + requestIdRetentionMs });
    expect(await put("app/t", "v", "old", { at: 1002 + requestIdRetentionMs })).toEqual({
      ok: true,
      version: 2,
    });
    expect((await machine.metadata("app/t"))?.current).toBe(2);
  });

  it("keeps its ids across a restart, in the order they applied, and in a snapshot on another node", async () => {
    const first = await fixture();
    await first.put("app/x", "1", "z-first", { at: 1000 });
    await first.put("app/x", "2", "a-second", { at: 2000 });
    await stores.close(first.machine);

    const reopened = await fixture(first.directory);
    expect(await reopened.put("app/x", "1", "z-first", { at: 3000 })).toMatchObject({ replayOf: 1 });
    expect(await reopened.put("app/x", "2", "a-second", { at: 3000 })).toMatchObject({ replayOf: 2 });
    const snapshot = await reopened.machine.snapshot();

    const other = await fixture();
    await other.machine.restore(() => [snapshot]);
    expect(other.machine.appliedIndex()).toBe(4);
    // The order survived (by entry, not by the ids' names): the first is forgotten first.
    const past = 1001 + requestIdRetentionMs;
    await reopened.apply({ op: "kv.delete", path: "app/x", versions: [], at: past });
    await other.apply({ op: "kv.delete", path: "app/x", versions: [], at: past });
    for (const replica of [reopened, other]) {
      expect(await replica.put("app/x", "2", "a-second", { at: past })).toMatchObject({ replayOf: 2 });
      expect(await replica.put("app/x", "1", "z-first", { at: past })).toEqual({ ok: true, version: 3 });
    }
  });

  it("refuses a command whose request is malformed, as read from the log", () => {
    const command = (request: unknown) =>
      encodeCommand({ op: "kv.delete", path: "p", versions: [], at: 1, request } as unknown as SecretCommand);
    expect(() => decodeCommand(command({ id: "ok", fingerprint: new Uint8Array(31) }))).toThrow(
      "malformed command: request is not an id and a SHA-256 digest",
    );
    expect(() => decodeCommand(command({ id: "no spaces", fingerprint: new Uint8Array(32) }))).toThrow(
      /malformed command: a request id is 1 to 128 characters/,
    );
    expect(decodeCommand(command({ id: "ok", fingerprint: new Uint8Array(32) }))).toMatchObject({
      request: { id: "ok" },
    });
  });

  it("validates ids: a UUID passes; empty, too long or other characters do not", () => {
    expect(() => validateRequestId("3f2b8c1e-5d2a-4f7e-9b1c-0a2d4e6f8a9b")).not.toThrow();
    for (const bad of ["", "x".repeat(129), "a/b", "é"]) {
      expect(() => validateRequestId(bad)).toThrow("a request id is 1 to 128 characters");
    }
  });
});

describe("the request window", () => {
  it("forgets the oldest beyond its count, and those past the retention, oldest first", () => {
    const window = new RequestWindow();
    for (let n = 0; n < requestIdsKept; n++) window.add(`id-${n}`, 1000);
    expect(window.expire(1000, 0)).toEqual([]);
    expect(window.expire(1000, 2)).toEqual(["id-0", "id-1"]);
    expect(window.size).toBe(requestIdsKept - 2);
    window.add("late", 5000);
    // Forgotten by time: everything of time 1000, then it stops at the first still inside.
    expect(window.expire(1001 + requestIdRetentionMs, 0)).toHaveLength(requestIdsKept - 2);
    expect(window.size).toBe(1);
  });

  it("reloads in entry order, whatever order the records come in", () => {
    const window = new RequestWindow();
    window.reload([
      { id: "b", index: 9, at: 10 },
      { id: "a", index: 3, at: 50 },
    ]);
    // "a" applied first: it goes first, although its time is later.
    expect(window.expire(51 + requestIdRetentionMs, 0)).toEqual(["a", "b"]);
  });
});
