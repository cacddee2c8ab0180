// The secret state machine with KV v2 semantics: versions, check-and-set, soft delete, undelete,
// destroy, max_versions, expiry, metadata limits, listing, and the applied index that makes a
// replay after a restart exact. Values go through a real barrier, as a proposer would send them.

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Barrier, Keyring } from "../../storage/barrier/index.js";
import {
  decodeCommand,
  defaultStateLimits,
  encodeCommand,
  recordDigest,
  revisionOffsetRecord,
  type SecretCommand,
  type StateError,
  systemPutAllRecordsMax,
} from "../../storage/state/index.js";
import { putCommand, stateMachineStores, unsealedBarrier } from "./fixtures/state-machine-stores.js";

const stores = stateMachineStores("secret-state");
const barrier = unsealedBarrier();
const bytes = (text: string) => new TextEncoder().encode(text);

/** A state machine and a proposer that numbers entries and encrypts values through the barrier. */
async function fixture(directory = stores.newDirectory()) {
  const machine = await stores.open(directory);
  let index = machine.appliedIndex();
  const apply = (command: SecretCommand) => machine.apply(++index, encodeCommand(command));
  const put = (path: string, value: string, options: { cas?: number | null; at?: number } = {}) =>
    apply(putCommand(barrier, path, value, options));
  const get = async (path: string, version: number | null = null, now = 2000) => {
    const found = await machine.read(path, version, now);
    return new TextDecoder().decode(barrier.decrypt(path, found.ciphertext));
  };
  const failure = async (read: Promise<unknown>) =>
    read.then(
      () => null,
      (error: StateError) => `${error.code}: ${error.message}`,
    );
  return { machine, apply, put, get, failure, directory };
}

describe("secret state machine", () => {
  it("keeps versions: each put adds one, and any kept version can be read", async () => {
    const { put, get } = await fixture();
    expect(await put("app/db/password", "one")).toEqual({ ok: true, version: 1 });
    expect(await put("app/db/password", "two")).toEqual({ ok: true, version: 2 });
    expect(await get("app/db/password")).toBe("two");
    expect(await get("app/db/password", 1)).toBe("one");
  });

  it("writes its records under the keys earlier versions wrote: a store outlives an upgrade", async () => {
    const { apply, put, machine, directory } = await fixture();
    await put("app/db", "one");
    await put("app/db", "two");
    await apply({ op: "sys.put", area: "token", path: "t-1", value: bytes("a token record"), at: 1 });
    await stores.close(machine);
    const { ClassicLevel } = await import("classic-level");
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
      keyEncoding: "view",
      valueEncoding: "view",
    });
    const records = new Map(
      (await raw.iterator().all()).map(([key, value]) => [Buffer.from(key).toString("hex"), value]),
    );
    await raw.close();
    // Built by hand: a kind byte, then the path or name in UTF-8, a version or a term big-endian.
    const hex = (...parts: (number[] | string)[]) =>
      Buffer.concat(
        parts.map((part) => Buffer.from(typeof part === "string" ? part : Uint8Array.from(part))),
      ).toString("hex");
    const term = barrier.activeTerm();
    const termBytes = [term >>> 24, (term >>> 16) & 0xff, (term >>> 8) & 0xff, term & 0xff];
    expect([...records.keys()].sort()).toEqual(
      [
        hex([0x01]), // the applied index
        hex([0x02], "app/db"), // the secret's metadata
        hex([0x03], "app/db", [0x00, 0, 0, 0, 1]), // its versions
        hex([0x03], "app/db", [0x00, 0, 0, 0, 2]),
        hex([0x04], termBytes), // values encrypted under the barrier's key term
        hex([0x05, 0x01], "t-1"), // a system record: area 1 (tokens), its name
      ].sort(),
    );
    expect(Buffer.from(records.get(hex([0x04], termBytes)) ?? []).readBigUInt64BE()).toBe(2n);
    expect(Buffer.from(records.get(hex([0x05, 0x01], "t-1")) ?? []).toString()).toBe("a token record");
  });

  it("check-and-set: cas=0 means 'must not exist', cas=n 'current version is n'; a mismatch changes nothing", async () => {
    const { put, get, machine } = await fixture();
    expect(await put("k", "first", { cas: 0 })).toEqual({ ok: true, version: 1 });
    expect(await put("k", "again", { cas: 0 })).toMatchObject({
      ok: false,
      code: "CAS_MISMATCH",
      message: "check-and-set expected version 0 of k; it is at 1",
    });
    expect(await put("k", "second", { cas: 1 })).toEqual({ ok: true, version: 2 });
    expect(await put("k", "stale", { cas: 1 })).toMatchObject({ ok: false, code: "CAS_MISMATCH" });
    expect(await get("k")).toBe("second");
    expect((await machine.metadata("k"))?.current).toBe(2);
  });

  it("cas_required refuses a put without check-and-set", async () => {
    const { apply, put } = await fixture();
    await apply({ op: "kv.metadata", path: "k", changes: { casRequired: true }, at: 1 });
    expect(await put("k", "v")).toMatchObject({ ok: false, code: "CAS_REQUIRED" });
    expect(await put("k", "v", { cas: 0 })).toEqual({ ok: true, version: 1 });
  });

  it("trims the oldest versions beyond max_versions, ciphertext and all", async () => {
    const { apply, put, get, failure, machine, directory } = await fixture();
    await apply({ op: "kv.metadata", path: "k", changes: { maxVersions: 3 }, at: 1 });
    for (let i = 1; i <= 5; i++) await put("k", `v${i}`);
    expect([...((await machine.metadata("k"))?.versions.keys() ?? [])]).toEqual([3, 4, 5]);
    expect(await failure(get("k", 2))).toBe("NOT_FOUND: version 2 of k was trimmed (max_versions)");
    expect(await get("k", 3)).toBe("v3");
    // Lowering max_versions trims at once.
    await apply({ op: "kv.metadata", path: "k", changes: { maxVersions: 1 }, at: 2 });
    expect([...((await machine.metadata("k"))?.versions.keys() ?? [])]).toEqual([5]);
    // The trimmed versions' ciphertexts are gone from LevelDB, not only from the metadata.
    await stores.close(machine);
    const { ClassicLevel } = await import("classic-level");
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
      keyEncoding: "view",
      valueEncoding: "view",
    });
    const versionRecords = await raw.keys({ gte: Uint8Array.of(0x03), lt: Uint8Array.of(0x04) }).all();
    await raw.close();
    expect(versionRecords).toHaveLength(1);
  });

  it("soft delete hides a version, undelete brings it back, destroy erases it for good", async () => {
    const { apply, put, get, failure } = await fixture();
    await put("k", "v1");
    await put("k", "v2");
    expect(await apply({ op: "kv.delete", path: "k", versions: [], at: 1500 })).toEqual({
      ok: true,
      version: null,
    });
    expect(await failure(get("k"))).toBe("NOT_FOUND: version 2 of k is deleted");
    expect(await get("k", 1)).toBe("v1");
    await apply({ op: "kv.undelete", path: "k", versions: [2], at: 1600 });
    expect(await get("k")).toBe("v2");
    await apply({ op: "kv.destroy", path: "k", versions: [2], at: 1700 });
    expect(await failure(get("k"))).toBe("NOT_FOUND: version 2 of k was destroyed");
    await apply({ op: "kv.undelete", path: "k", versions: [2], at: 1800 });
    expect(await failure(get("k"))).toBe("NOT_FOUND: version 2 of k was destroyed");
  });

  it("stops serving versions older than delete_version_after, by the time given to read", async () => {
    const { apply, put, get, failure } = await fixture();
    await apply({ op: "kv.metadata", path: "k", changes: { deleteVersionAfterMs: 500 }, at: 1 });
    await put("k", "v", { at: 1000 });
    expect(await get("k", null, 1499)).toBe("v");
    expect(await failure(get("k", null, 1500))).toBe(
      "EXPIRED: version 1 of k has expired (older than delete_version_after, 500 ms)",
    );
  });

  it("deleteAll removes the secret, its metadata and every version", async () => {
    const { apply, put, failure, machine } = await fixture();
    await put("k", "v");
    await apply({ op: "kv.deleteAll", path: "k", at: 2 });
    expect(await machine.metadata("k")).toBeNull();
    expect(await failure(machine.read("k", 1, 0))).toBe("NOT_FOUND: no secret at k");
    expect(await put("k", "again", { cas: 0 })).toEqual({ ok: true, version: 1 });
  });

  it("lists paths under a prefix, in order, a page at a time", async () => {
    const { put, machine } = await fixture();
    for (const path of ["app/a", "app/b", "app/c/d", "apps/x", "other/y"]) await put(path, "v");
    const first = await machine.list("app/", null, 2);
    expect(first).toEqual({ paths: ["app/a", "app/b"], next: "app/b" });
    expect(await machine.list("app/", first.next, 2)).toEqual({ paths: ["app/c/d"], next: null });
    expect((await machine.list("", null, 10)).paths).toEqual([
      "app/a",
      "app/b",
      "app/c/d",
      "apps/x",
      "other/y",
    ]);
    await expect(machine.list("app/", null, 0)).rejects.toThrow(/a page holds 1 to 1000 names/);
    await expect(machine.list("app/", "other/y", 5)).rejects.toThrow(/cursor is not under the prefix/);
    await expect(machine.list("/", null, 5)).rejects.toThrow(
      'invalid prefix "/": a prefix does not start with \'/\' (give "" for everything, or e.g. "app/")',
    );
    // Named as given: it was 'invalid path "app/"'.
    await expect(machine.list("app//", null, 5)).rejects.toThrow(
      `invalid prefix "app//": empty segment (leading, trailing or double '/')`,
    );
  });

  it("refuses bad input with a clear, deterministic result and moves the applied index anyway", async () => {
    const { apply, put, machine } = await fixture();
    expect(await put("a//b", "v")).toMatchObject({
      ok: false,
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/empty segment/),
    });
    expect(await put("a/../b", "v")).toMatchObject({ ok: false, code: "INVALID_ARGUMENT" });
    expect(await put("a b", "v")).toMatchObject({
      ok: false,
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/only letters/),
    });
    expect(await put("k", "x".repeat(1024 * 1024 + 1))).toMatchObject({ ok: false, code: "VALUE_TOO_LARGE" });
    expect(await apply({ op: "kv.metadata", path: "k", changes: { maxVersions: 0 }, at: 1 })).toMatchObject({
      ok: false,
      code: "INVALID_ARGUMENT",
    });
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    expect(await apply({ op: "kv.metadata", path: "k", changes: { custom: tooMany }, at: 1 })).toMatchObject({
      ok: false,
      message: "custom metadata has 65 keys; the limit is 64",
    });
    expect(await machine.apply(machine.appliedIndex() + 1, bytes("not msgpack at all"))).toMatchObject({
      ok: false,
      code: "MALFORMED_COMMAND",
    });
    expect(machine.appliedIndex()).toBe(7);
    expect(await machine.metadata("k")).toBeNull();
  });

  it("tells its listener of each command that changed the state, as applied, and of no refused one", async () => {
    const { machine, put, apply } = await fixture();
    const heard: [number, string, string, number | null][] = [];
    machine.onApplied((index, command, version) => heard.push([index, command.op, command.path, version]));
    await put("app/a", "one");
    await put("app/a", "stale", { cas: 0 });
    await apply({ op: "kv.delete", path: "app/a", versions: [], at: 1000 });
    expect(heard).toEqual([
      [1, "kv.put", "app/a", 1],
      [3, "kv.delete", "app/a", null],
    ]);
  });

  it("remembers its applied index across a restart, so a replay skips what was applied", async () => {
    const first = await fixture();
    await first.put("k", "v1");
    await first.put("k", "v2");
    await first.machine.flush();
    await stores.close(first.machine);
    const again = await fixture(first.directory);
    expect(again.machine.appliedIndex()).toBe(2);
    expect(
      await again.machine.apply(2, encodeCommand({ op: "kv.deleteAll", path: "k", at: 9 })),
    ).toMatchObject({ ok: false });
    expect(await again.get("k")).toBe("v2");
  });

  it("counts the values applied under each barrier key term, for a new leader's barrier to continue from", async () => {
    const { machine } = await fixture();
    const local = new Barrier({ rotateAfterEncryptions: 3 });
    local.unseal(Keyring.create(0));
    let index = machine.appliedIndex();
    for (let i = 0; i < 5; i++) {
      const path = `k${i}`;
      await machine.apply(
        ++index,
        encodeCommand({ op: "kv.put", path, ciphertext: local.encrypt(path, bytes("v")), cas: null, at: i }),
      );
    }
    expect(await machine.encryptionCounts()).toEqual(
      new Map([
        [1, 3],
        [2, 2],
      ]),
    );
    // A barrier that takes over continues from the replicated counts, and so rotates on time.
    const successor = new Barrier({ rotateAfterEncryptions: 3 });
    const keyring = Keyring.create(0);
    keyring.rotate(1);
    successor.unseal(keyring);
    for (const [term, count] of await machine.encryptionCounts()) successor.noteEncryptions(term, count);
    successor.encrypt("y", bytes("v"));
    expect(successor.activeTerm()).toBe(2);
    successor.encrypt("y", bytes("v"));
    expect(successor.activeTerm()).toBe(3);
  });
});

describe("writes behind the applies", () => {
  it("serves an applied write at once, lists it, and has every apply after a reopen", async () => {
    const first = await fixture();
    for (let i = 0; i < 200; i++) {
      await first.put(`burst/k${String(i).padStart(3, "0")}`, `v${i}`, { at: 1000 + i });
      // Read back at once: from the writes not in LevelDB yet, or from LevelDB.
      expect(await first.get(`burst/k${String(i).padStart(3, "0")}`)).toBe(`v${i}`);
    }
    await first.apply({ op: "kv.deleteAll", path: "burst/k000", at: 3000 });
    expect(await first.machine.metadata("burst/k000")).toBeNull();
    const listed = await first.machine.list("burst/", null, 1000);
    expect(listed.paths).toHaveLength(199);
    expect(listed.paths[0]).toBe("burst/k001");
    expect(await first.machine.encryptionCounts()).toEqual(new Map([[1, 200]]));
    await stores.close(first.machine);
    const again = await fixture(first.directory);
    expect(again.machine.appliedIndex()).toBe(201);
    expect(await again.machine.metadata("burst/k000")).toBeNull();
    // Each secret's metadata record as written, though all were encoded into one buffer in turn.
    for (let i = 1; i < 200; i++) {
      const path = `burst/k${String(i).padStart(3, "0")}`;
      expect(await again.get(path)).toBe(`v${i}`);
      expect(await again.machine.metadata(path)).toMatchObject({ current: 1, created: 1000 + i });
    }
  });
});

describe("state machine snapshots", () => {
  it("restores on another node the exact state: versions, metadata, counts and the applied index", async () => {
    const source = await fixture();
    await source.apply({
      op: "kv.metadata",
      path: "app/a",
      changes: { maxVersions: 2, owner: "team-a" },
      at: 1,
    });
    for (let i = 0; i < 3; i++) await source.put("app/a", `a${i}`);
    await source.put("app/b", "b");
    await source.apply({ op: "kv.delete", path: "app/b", versions: [], at: 5 });
    const snapshot = await source.machine.snapshot();
    // Applies after the snapshot are not in it.
    await source.put("app/c", "later");

    const target = await fixture();
    await target.put("stale/path", "replaced by the restore");
    await target.machine.restore(() => [snapshot]);
    expect(target.machine.appliedIndex()).toBe(6);
    expect(await target.get("app/a")).toBe("a2");
    expect(await target.failure(target.get("app/a", 1))).toMatch(/trimmed/);
    expect(await target.failure(target.get("app/b"))).toMatch(/is deleted/);
    expect((await target.machine.metadata("app/a"))?.owner).toBe("team-a");
    expect((await target.machine.list("", null, 100)).paths).toEqual(["app/a", "app/b"]);
    // Nothing of the state before the restore is served, cached metadata included.
    expect(await target.machine.metadata("stale/path")).toBeNull();
    expect(await target.machine.encryptionCounts()).toEqual(new Map([[1, 4]]));
  });

  it("holds a capture that reads out the same bytes each time, applies meanwhile left out, until released", async () => {
    const source = await fixture();
    const value = "v".repeat(4096);
    for (let i = 0; i < 80; i++) await source.put(`app/s${i}`, `${i}:${value}`);
    const held = await source.machine.holdSnapshot();
    expect(held.appliedIndex).toBe(source.machine.appliedIndex());
    await source.put("app/later", "not in the capture");
    const first = await collect(held.read());
    const second = await collect(held.read());
    expect(first.length).toBeGreaterThan(300 * 1024);
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    await held.release();
    const target = await fixture();
    await target.machine.restore(() => [first]);
    expect(await target.get("app/s79")).toBe(`79:${value}`);
    expect(await target.machine.metadata("app/later")).toBeNull();
    // Released: the LevelDB snapshot is closed, so reading on fails.
    await expect(collect(held.read())).rejects.toThrow();
  });

  it("refuses a damaged or truncated snapshot before touching the state", async () => {
    const source = await fixture();
    await source.put("k", "v");
    const snapshot = await source.machine.snapshot();
    const target = await fixture();
    await target.put("mine", "kept");
    const damaged = new Uint8Array(snapshot);
    damaged[30] = (damaged[30] ?? 0) ^ 1;
    await expect(target.machine.restore(() => [damaged])).rejects.toThrow(/chunk 1 fails its checksum/);
    await expect(target.machine.restore(() => [snapshot.subarray(0, snapshot.length - 4)])).rejects.toThrow(
      /truncated/,
    );
    await expect(target.machine.restore(() => [new Uint8Array(10)])).rejects.toThrow(/snapshot header/);
    expect(await target.get("mine")).toBe("kept");
  });

  it("restores from parts cut anywhere; bytes that change between its check and its writes fail it, to be restored again", async () => {
    const source = await fixture();
    const value = "v".repeat(4096);
    for (let i = 0; i < 80; i++) await source.put(`app/s${i}`, `${i}:${value}`);
    const snapshot = await source.machine.snapshot();
    // More than one 256 KiB chunk, so parts end inside frames, payloads and records.
    expect(snapshot.length).toBeGreaterThan(300 * 1024);
    const cutSizes = [1, 7, 4096, 100_000, 13];
    function* cut(data: Uint8Array): Generator<Uint8Array> {
      for (let start = 0, i = 0; start < data.length; i++) {
        const size = cutSizes[i % cutSizes.length] as number;
        yield data.subarray(start, start + size);
        start += size;
      }
    }
    const target = await fixture();
    await target.put("stale", "replaced");
    await target.machine.restore(() => cut(snapshot));
    expect(target.machine.appliedIndex()).toBe(80);
    expect(await target.get("app/s0")).toBe(`0:${value}`);
    expect(await target.get("app/s79")).toBe(`79:${value}`);
    expect((await target.machine.list("", null, 1000)).paths).toHaveLength(80);

    // Anything after the last chunk is refused before the state is touched.
    await expect(target.machine.restore(() => [snapshot, Uint8Array.of(0)])).rejects.toThrow(
      /bytes after its last chunk/,
    );
    expect(target.machine.appliedIndex()).toBe(80);

    // Checked whole, then damaged in its second chunk when read again to be written.
    const damaged = new Uint8Array(snapshot);
    damaged[damaged.length - 100] = (damaged[damaged.length - 100] ?? 0) ^ 1;
    let reads = 0;
    await expect(
      target.machine.restore(() => (++reads === 1 ? cut(snapshot) : cut(damaged))),
    ).rejects.toThrow(/chunk 2 fails its checksum/);
    expect(reads).toBe(2);
    await stores.close(target.machine);
    const reopened = await fixture(target.directory);
    expect(reopened.machine.appliedIndex()).toBe(0);
  });

  it("a restore cut short by a crash leaves the store reporting nothing applied, so it is restored again", async () => {
    const { machine, put, directory } = await fixture();
    await put("k", "v");
    const snapshot = await machine.snapshot();
    // Simulate the crash: the marker written at the start of a restore is still there.
    const { ClassicLevel } = await import("classic-level");
    await stores.close(machine);
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(directory, {
      keyEncoding: "view",
      valueEncoding: "view",
    });
    await raw.put(Uint8Array.of(0x7f), Uint8Array.of(1));
    await raw.close();
    const reopened = await fixture(directory);
    expect(reopened.machine.appliedIndex()).toBe(0);
    await reopened.machine.restore(() => [snapshot]);
    expect(reopened.machine.appliedIndex()).toBe(1);
    expect(await reopened.get("k")).toBe("v");
  });
});

describe("revisions", () => {
  it("are Raft indexes plus the offset a restore loads, kept across a reopen and in snapshots", async () => {
    const { machine, apply, put, directory } = await fixture();
    await put("app/a", "before");
    expect(machine.appliedRevision()).toBe(1);
    expect(machine.revisionOf(7)).toBe(7);
    const loaded = await apply({ op: "state.load", path: "", records: [revisionOffsetRecord(5_000)], at: 1 });
    expect(loaded).toEqual({ ok: true, version: null });
    expect(machine.revisionOf(7)).toBe(5_007);
    expect(machine.appliedRevision()).toBe(5_002);

    // The offset is in the state: a reopen and a snapshot restored elsewhere keep it.
    const snapshot = await machine.snapshot();
    await stores.close(machine);
    const reopened = await fixture(directory);
    expect(reopened.machine.appliedRevision()).toBe(5_002);
    const other = await fixture();
    await other.machine.restore(() => [snapshot]);
    expect(other.machine.revisionOf(3)).toBe(5_003);
  });

  it("refuses an offset record that does not hold a whole number, loading nothing of its entry", async () => {
    const { machine, apply } = await fixture();
    const bad = { key: Uint8Array.of(0x06), value: new TextEncoder().encode("not msgpack of a number") };
    const other = { key: Uint8Array.of(0x06, 1), value: Uint8Array.of(1) };
    for (const record of [bad, revisionOffsetRecord(-1), revisionOffsetRecord(1.5)]) {
      expect(await apply({ op: "state.load", path: "", records: [record], at: 1 })).toEqual({
        ok: false,
        code: "INVALID_ARGUMENT",
        message: "a revision offset record does not hold a whole number",
      });
    }
    expect(await apply({ op: "state.load", path: "", records: [other], at: 1 })).toMatchObject({
      ok: false,
      message: "a restored record has a key of unknown kind 6",
    });
    expect(machine.revisionOf(1)).toBe(1);
  });
});

describe("memory of what outlives an apply", () => {
  it("tells its listeners of bytes in memory of their own, not in the batch the entry was read from", async () => {
    // A follower reads each entry out of the Raft batch it arrived in, and the access view keeps
    // every token record as applied, for hours: a view would keep the whole batch with it.
    const machine = await stores.open(stores.newDirectory());
    const told: SecretCommand[] = [];
    machine.onApplied((_index, command) => told.push(command));
    const commands: SecretCommand[] = [
      { op: "sys.put", area: "token", path: "t1", value: bytes("a token record"), at: 1 },
      putCommand(barrier, "app/db", "s3cr3t", {}),
      {
        op: "sys.putAll",
        path: "",
        records: [{ area: "policy", path: "readers", value: bytes("a policy") }],
        ifAbsent: [],
        at: 1,
      },
    ];
    let index = machine.appliedIndex();
    for (const command of commands) {
      const entry = encodeCommand(command);
      const batch = new Uint8Array(256 * 1024);
      batch.set(entry, 4096);
      await machine.apply(++index, batch.subarray(4096, 4096 + entry.length));
    }
    const held = told.flatMap((command) => {
      if (command.op === "sys.put") return [command.value];
      if (command.op === "kv.put") return [command.ciphertext];
      if (command.op === "sys.putAll") return command.records.map((record) => record.value);
      return [];
    });
    expect(held).toHaveLength(3);
    for (const value of held) expect(value.buffer.byteLength).toBe(value.byteLength);
    expect(new TextDecoder().decode(held[0])).toBe("a token record");
  });
});

describe("reserved system areas", () => {
  it("store, list and delete encrypted records per area, apart from secrets and from each other", async () => {
    const { apply, put, machine } = await fixture();
    const sealed = (area: string, name: string) =>
      barrier.encrypt(`sys/${area}/${name}`, bytes(`${area}:${name}`));
    expect(
      await apply({
        op: "sys.put",
        area: "policy",
        path: "readers",
        value: sealed("policy", "readers"),
        at: 1,
      }),
    ).toEqual({ ok: true, version: null });
    await apply({
      op: "sys.put",
      area: "policy",
      path: "writers",
      value: sealed("policy", "writers"),
      at: 1,
    });
    await apply({
      op: "sys.put",
      area: "token",
      path: "9f86d081884c7d65",
      value: sealed("token", "9f86d081884c7d65"),
      at: 1,
    });
    await put("readers", "a secret with the same name");
    expect((await machine.listSystem("policy", null, 10)).names).toEqual(["readers", "writers"]);
    expect((await machine.listSystem("token", null, 10)).names).toEqual(["9f86d081884c7d65"]);
    expect((await machine.list("", null, 10)).paths).toEqual(["readers"]);
    const record = await machine.systemRecord("policy", "readers");
    expect(new TextDecoder().decode(barrier.decrypt("sys/policy/readers", record as Uint8Array))).toBe(
      "policy:readers",
    );
    expect(await apply({ op: "sys.delete", area: "policy", path: "readers", at: 2 })).toEqual({
      ok: true,
      version: null,
    });
    expect(await machine.systemRecord("policy", "readers")).toBeNull();
    expect(await apply({ op: "sys.delete", area: "policy", path: "readers", at: 3 })).toMatchObject({
      ok: false,
      code: "NOT_FOUND",
    });
    // A restored snapshot carries the system areas too.
    const snapshot = await machine.snapshot();
    const other = await fixture();
    await other.machine.restore(() => [snapshot]);
    expect((await other.machine.listSystem("policy", null, 10)).names).toEqual(["writers"]);
  });

  it("checks a system record's value before a put or delete that names its digest (check-and-set)", async () => {
    const { apply, machine } = await fixture();
    const first = bytes("first");
    await apply({ op: "sys.put", area: "token", path: "t1", value: first, at: 1 });
    const stale = recordDigest(bytes("something else"));
    expect(
      await apply({
        op: "sys.put",
        area: "token",
        path: "t1",
        value: bytes("second"),
        at: 2,
        ifDigest: stale,
      }),
    ).toMatchObject({ ok: false, code: "CAS_MISMATCH" });
    expect(
      await apply({ op: "sys.put", area: "token", path: "t2", value: bytes("new"), at: 2, ifDigest: stale }),
    ).toMatchObject({ ok: false, code: "CAS_MISMATCH" });
    expect(
      await apply({
        op: "sys.put",
        area: "token",
        path: "t1",
        value: bytes("second"),
        at: 2,
        ifDigest: recordDigest(first),
      }),
    ).toEqual({ ok: true, version: null });
    expect(
      await apply({ op: "sys.delete", area: "token", path: "t1", at: 3, ifDigest: recordDigest(first) }),
    ).toMatchObject({
      ok: false,
      code: "CAS_MISMATCH",
    });
    expect(
      await apply({
        op: "sys.delete",
        area: "token",
        path: "t1",
        at: 3,
        ifDigest: recordDigest(bytes("second")),
      }),
    ).toEqual({ ok: true, version: null });
    expect(await machine.systemRecord("token", "t1")).toBeNull();
    // The digest travels through the log encoding and back.
    const encoded = encodeCommand({ op: "sys.delete", area: "token", path: "t9", at: 4, ifDigest: stale });
    expect(decodeCommand(encoded)).toEqual({
      op: "sys.delete",
      area: "token",
      path: "t9",
      at: 4,
      ifDigest: Uint8Array.from(stale),
    });
  });

  it("writes a sys.putAll's records together, and none of them while a record it names as absent exists", async () => {
    const { apply, machine } = await fixture();
    const told: SecretCommand[] = [];
    machine.onApplied((_index, command) => told.push(command));
    // Shaped as init writes: the keyring and a root token, then the seal record; only while no
    // seal record exists.
    const init = (who: string): SecretCommand => ({
      op: "sys.putAll",
      path: "",
      records: [
        { area: "keyring", path: "current", value: bytes(`${who}'s keyring`) },
        { area: "token", path: `${who}-root`, value: bytes(`${who}'s root token`) },
        { area: "seal", path: "current", value: bytes(`${who}'s seal record`) },
      ],
      ifAbsent: [{ area: "seal", path: "current" }],
      at: 1,
    });
    const stored = async (area: "keyring" | "token" | "seal", name: string) => {
      const record = await machine.systemRecord(area, name);
      return record === null ? null : new TextDecoder().decode(record);
    };

    expect(await apply(init("first"))).toEqual({ ok: true, version: null });
    expect(await apply(init("second"))).toEqual({
      ok: false,
      code: "CAS_MISMATCH",
      message: "the seal record current exists",
    });
    expect(await stored("keyring", "current")).toBe("first's keyring");
    expect(await stored("seal", "current")).toBe("first's seal record");
    expect(await stored("token", "first-root")).toBe("first's root token");
    expect(await stored("token", "second-root")).toBeNull();
    // The listener hears of the write that applied, once, and not of the refused one.
    expect(told).toEqual([init("first")]);

    // A record too large refuses the whole write: the records before it are not written either.
    const tooLarge = new Uint8Array(defaultStateLimits.valueBytesMax + 1024);
    expect(
      await apply({
        op: "sys.putAll",
        path: "",
        records: [
          { area: "pki", path: "ca", value: bytes("a CA") },
          { area: "pki", path: "role/web", value: tooLarge },
        ],
        ifAbsent: [],
        at: 2,
      }),
    ).toMatchObject({ ok: false, code: "VALUE_TOO_LARGE" });
    expect(await machine.systemRecord("pki", "ca")).toBeNull();
  });

  it("refuses a sys.putAll read from the log that is not well formed, and reads back one that is", async () => {
    const { machine } = await fixture();
    const valid = {
      op: "sys.putAll",
      path: "",
      records: [{ area: "pki", path: "ca", value: bytes("a CA") }],
      ifAbsent: [{ area: "pki", path: "ca" }],
      at: 1,
    } as const;
    expect(decodeCommand(encodeCommand(valid))).toEqual(valid);
    const record = { area: "pki", path: "ca", value: bytes("a CA") };
    const forged: [Record<string, unknown>, string][] = [
      [{ path: "x" }, "path is not empty"],
      [{ records: [] }, "records is empty"],
      [
        { records: Array.from({ length: systemPutAllRecordsMax + 1 }, () => record) },
        "records is not a list of at most 16",
      ],
      [{ records: [{ ...record, area: "nope" }] }, "a record's area is not a system area"],
      [{ records: [{ ...record, value: "text" }] }, "a record's value is not bytes"],
      [{ ifAbsent: "pki/ca" }, "ifAbsent is not a list of at most 16"],
      [{ ifAbsent: [{ area: "pki", path: 3 }] }, "a record's path is not a string"],
    ];
    let index = 0;
    for (const [change, why] of forged) {
      const encoded = encodeCommand({ ...valid, ...change } as unknown as SecretCommand);
      expect(await machine.apply(++index, encoded)).toEqual({
        ok: false,
        code: "MALFORMED_COMMAND",
        message: `malformed command: ${why}`,
      });
    }
    expect(await machine.systemRecord("pki", "ca")).toBeNull();
  });

  it("refuses an unknown area in a command read from the log", async () => {
    const { machine } = await fixture();
    const forged = encodeCommand({
      op: "sys.put",
      area: "nope" as "policy",
      path: "x",
      value: bytes("v"),
      at: 1,
    });
    expect(await machine.apply(1, forged)).toMatchObject({
      ok: false,
      code: "MALFORMED_COMMAND",
      message: "malformed command: area is not a system area",
    });
  });
});

describe("damaged files", () => {
  it("a damaged table file is reported as STORAGE_CORRUPT naming the directory, never served", async () => {
    const { readdirSync, readFileSync, writeFileSync } = await import("node:fs");
    const { ClassicLevel } = await import("classic-level");
    const first = await fixture();
    // Metadata compresses well, so LevelDB stores it in snappy-compressed table blocks.
    for (let i = 0; i < 400; i++) {
      await first.apply({
        op: "kv.metadata",
        path: `app/s${i}`,
        changes: { owner: "owner ".repeat(40) },
        at: i,
      });
    }
    await stores.close(first.machine);
    const raw = new ClassicLevel(first.directory);
    await raw.open();
    await raw.compactRange("\u0000", "\u00ff");
    await raw.close();
    const table = readdirSync(first.directory).find((name) => name.endsWith(".ldb")) as string;
    const content = readFileSync(join(first.directory, table));
    for (let offset = 100; offset < content.length - 100; offset += 997)
      content[offset] = (content[offset] ?? 0) ^ 0xff;
    writeFileSync(join(first.directory, table), content);
    // LevelDB may notice at open (reading the applied index) or when the damaged block is read.
    const failure = await fixture(first.directory)
      .then((again) => again.machine.snapshot())
      .then(
        () => "served",
        (error: StateError) => `${error.code}: ${error.message}`,
      );
    // LevelDB reports the damage (a checksum), or a damaged block comes back as bytes that do not
    // decode (LevelDB does not verify every read): either way a typed corruption naming the store.
    expect(
      failure.startsWith(`STORAGE_CORRUPT: the secret store in ${first.directory} is corrupt (`),
      failure,
    ).toBe(true);
    expect(failure).toMatch(/\((LevelDB: Corruption:|the metadata of app\/s\d+ does not decode: )/);
  });
});

/** Every part of `parts`, joined. */
async function collect(parts: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const all: Uint8Array[] = [];
  for await (const part of parts) all.push(part);
  return Buffer.concat(all);
}
