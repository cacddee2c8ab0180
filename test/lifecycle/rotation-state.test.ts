// Rotation in the replicated state (storage/state): the schedule is set by each apply from the
// command's time alone (so every replica agrees, and a new leader finds the same due secrets),
// a rotation is a check-and-set on the due version (a second one for that version is refused:
// exactly once), the replaced version stays readable for the overlap and no longer, a failure is
// recorded and retried with backoff, and the schedule survives a restart of the store.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { Barrier, Keyring } from "../../storage/barrier/index.js";
import { encodeCommand, type SecretCommand, SecretStateMachine } from "../../storage/state/index.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-rotation-state-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const open: SecretStateMachine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((machine) => machine.close()));
});
const barrier = new Barrier();
barrier.unseal(Keyring.create(0));
let stores = 0;

async function fixture(directory = join(root, `s${++stores}`)) {
  const machine = await SecretStateMachine.open(directory);
  open.push(machine);
  let index = machine.appliedIndex();
  const apply = (command: SecretCommand) => machine.apply(++index, encodeCommand(command));
  const put = (path: string, at: number, options: { cas?: number; rotation?: true } = {}) =>
    apply({
      op: "kv.put",
      path,
      ciphertext: barrier.encrypt(path, new TextEncoder().encode(`value at ${at}`)),
      cas: options.cas ?? null,
      at,
      ...(options.rotation === true ? { rotation: true as const } : {}),
    });
  return { machine, apply, put, directory };
}

const hour = 3_600_000;
const generator = { kind: "random-bytes", length: 32, encoding: "base64" };

it("schedules a rotating secret a period after each new value, with the same jitter on every replica", async () => {
  const a = await fixture();
  const b = await fixture();
  for (const { apply, put } of [a, b]) {
    await put("app/key", 1000);
    expect(
      await apply({
        op: "kv.metadata",
        path: "app/key",
        changes: { rotationPeriodMs: 24 * hour, generator },
        at: 2000,
      }),
    ).toEqual({ ok: true, version: null });
  }
  const metadata = await a.machine.metadata("app/key");
  // First time: a period (and up to a tenth of it, at most an hour) from when the policy was set.
  expect(metadata?.nextRotationAt).toBeGreaterThanOrEqual(2000 + 24 * hour);
  expect(metadata?.nextRotationAt).toBeLessThanOrEqual(2000 + 25 * hour);
  expect((await b.machine.metadata("app/key"))?.nextRotationAt).toBe(metadata?.nextRotationAt);
  expect(a.machine.dueRotations(2000 + 24 * hour - 1, 10)).toEqual([]);
  expect(a.machine.dueRotations(2000 + 25 * hour, 10)).toEqual([
    { path: "app/key", version: 1, dueAt: metadata?.nextRotationAt },
  ]);
  // Secrets set up together rotate at different times (the jitter spreads them).
  const { apply, put, machine } = await fixture();
  for (let i = 0; i < 20; i++) {
    await put(`many/s${i}`, 1000);
    await apply({
      op: "kv.metadata",
      path: `many/s${i}`,
      changes: { rotationPeriodMs: 24 * hour, generator },
      at: 2000,
    });
  }
  const times = new Set(machine.dueRotations(2000 + 26 * hour, 100).map((due) => due.dueAt));
  expect(times.size).toBeGreaterThan(15);
});

it("rotates exactly once per due version: a second rotation of that version fails its check-and-set", async () => {
  const { apply, put, machine } = await fixture();
  await put("db/password", 1000);
  await apply({
    op: "kv.metadata",
    path: "db/password",
    changes: { rotationPeriodMs: hour, generator },
    at: 1000,
  });
  const [due] = machine.dueRotations(1000 + 2 * hour, 10);
  expect(due?.version).toBe(1);
  const rotatedAt = 1000 + 2 * hour;
  expect(await put("db/password", rotatedAt, { cas: 1, rotation: true })).toEqual({ ok: true, version: 2 });
  // The old leader's proposal for the same due version, applied after: refused.
  expect(await put("db/password", rotatedAt + 5, { cas: 1, rotation: true })).toMatchObject({
    ok: false,
    code: "CAS_MISMATCH",
  });
  const metadata = await machine.metadata("db/password");
  expect(metadata?.current).toBe(2);
  expect(metadata?.lastRotated).toBe(rotatedAt);
  expect(metadata?.nextRotationAt).toBeGreaterThanOrEqual(rotatedAt + hour);
  expect(machine.dueRotations(rotatedAt + 1, 10)).toEqual([]);
});

it("keeps the replaced version readable for the overlap, and not after", async () => {
  const { apply, put, machine } = await fixture();
  await put("tls/key", 1000);
  await apply({
    op: "kv.metadata",
    path: "tls/key",
    changes: { rotationPeriodMs: hour, generator, rotationOverlapMs: 60_000 },
    at: 1000,
  });
  await put("tls/key", 5000, { cas: 1, rotation: true });
  expect((await machine.read("tls/key", 1, 5000 + 59_999)).version).toBe(1);
  await expect(machine.read("tls/key", 1, 5000 + 60_000)).rejects.toThrow(
    "version 1 of tls/key was replaced by a rotation and its overlap has ended",
  );
  expect((await machine.read("tls/key", null, 5000 + 60_000)).version).toBe(2);
  // A write by hand keeps the old version readable (versioned KV), and restarts the period.
  await put("tls/key", 9000);
  expect((await machine.read("tls/key", 2, 10 * hour)).version).toBe(2);
  expect((await machine.metadata("tls/key"))?.lastRotated).toBe(9000);
});

it("records a failed rotation and retries it with backoff; clearing the generator stops the schedule", async () => {
  const { apply, put, machine } = await fixture();
  await put("api/token", 1000);
  await apply({
    op: "kv.metadata",
    path: "api/token",
    changes: { rotationPeriodMs: hour, generator },
    at: 1000,
  });
  for (const [failures, backoff] of [
    [1, 2000],
    [2, 4000],
    [3, 8000],
  ] as const) {
    const at = 10 * hour + failures;
    expect(await apply({ op: "kv.rotationFailed", path: "api/token", error: "generator broke", at })).toEqual(
      {
        ok: true,
        version: null,
      },
    );
    const metadata = await machine.metadata("api/token");
    expect(metadata?.rotationFailures).toBe(failures);
    expect(metadata?.lastRotationError).toBe("generator broke");
    expect(metadata?.nextRotationAt).toBe(at + backoff);
  }
  // The next success clears the count.
  await put("api/token", 11 * hour, { cas: 1, rotation: true });
  expect((await machine.metadata("api/token"))?.rotationFailures).toBe(0);
  await apply({ op: "kv.metadata", path: "api/token", changes: { generator: null }, at: 11 * hour + 1 });
  expect((await machine.metadata("api/token"))?.nextRotationAt).toBe(0);
  expect(machine.dueRotations(100 * hour, 10)).toEqual([]);
  expect(
    await apply({ op: "kv.rotationFailed", path: "api/token", error: "x", at: 12 * hour }),
  ).toMatchObject({
    ok: false,
    code: "NOT_ROTATING",
  });
});

it("finds the schedule again after a restart, and after the secret is deleted it is gone", async () => {
  const first = await fixture();
  await first.put("s/one", 1000);
  await first.apply({
    op: "kv.metadata",
    path: "s/one",
    changes: { rotationPeriodMs: hour, generator },
    at: 1000,
  });
  await first.put("s/two", 1000);
  await first.apply({
    op: "kv.metadata",
    path: "s/two",
    changes: { rotationPeriodMs: hour, generator },
    at: 1000,
  });
  await first.apply({ op: "kv.deleteAll", path: "s/two", at: 2000 });
  await first.machine.flush();
  await first.machine.close();
  open.splice(open.indexOf(first.machine), 1);
  const again = await fixture(first.directory);
  expect(again.machine.dueRotations(10 * hour, 10).map((due) => due.path)).toEqual(["s/one"]);
  expect(again.machine.scheduledRotations()).toBe(1);
});

it("a secret past expires_at is refused as EXPIRED, listed by the stale report, and on the cleanup list until erased", async () => {
  const { apply, put, machine } = await fixture();
  await put("exp/a", 1000);
  await put("exp/b", 1000);
  await put("exp/c", 1000);
  await put("other/d", 1000);
  await apply({ op: "kv.metadata", path: "exp/a", changes: { expiresAt: 5000, owner: "team-a" }, at: 1000 });
  await apply({ op: "kv.metadata", path: "exp/b", changes: { expiresAt: 50_000 }, at: 1000 });
  await apply({ op: "kv.metadata", path: "exp/c", changes: { rotationPeriodMs: hour, generator }, at: 1000 });
  await apply({ op: "kv.metadata", path: "other/d", changes: { expiresAt: 2000 }, at: 1000 });
  expect((await machine.read("exp/a", null, 4999)).version).toBe(1);
  await expect(machine.read("exp/a", null, 5000)).rejects.toThrow(
    "exp/a expired at 1970-01-01T00:00:05.000Z",
  );
  await expect(machine.read("exp/a", 1, 6000)).rejects.toMatchObject({ code: "EXPIRED" });
  // The report: expired, expiring within the window, overdue for rotation; under the prefix only.
  const report = await machine.staleSecrets("exp/", 2 * hour, 0, 100);
  expect(report).toEqual({
    secrets: [
      { path: "exp/a", reason: "expired", at: 5000, owner: "team-a" },
      { path: "exp/b", reason: "expired", at: 50_000, owner: "" },
      {
        path: "exp/c",
        reason: "rotation-overdue",
        at: (await machine.metadata("exp/c"))?.nextRotationAt,
        owner: "",
      },
    ],
    truncated: false,
  });
  expect(
    (await machine.staleSecrets("exp/", 6000, 50_000, 100)).secrets.map((s) => `${s.path} ${s.reason}`),
  ).toEqual(["exp/a expired", "exp/b expiring"]);
  expect((await machine.staleSecrets("exp/", 2 * hour, 0, 2)).truncated).toBe(true);
  // The leader's cleanup list: expired and still holding values; erased ones leave it.
  expect(machine.expiredSecrets(6000, 10).sort()).toEqual(["exp/a", "other/d"]);
  expect(machine.expiredCount(6000)).toBe(2);
  await apply({ op: "kv.destroy", path: "exp/a", versions: [1], at: 6000 });
  expect(machine.expiredSecrets(6000, 10)).toEqual(["other/d"]);
  // Renewing the expiry (0: never) takes it off too.
  await apply({ op: "kv.metadata", path: "other/d", changes: { expiresAt: 0 }, at: 6000 });
  expect(machine.expiredSecrets(10 * hour, 10)).toEqual(["exp/b"]);
  expect(
    await apply({ op: "kv.metadata", path: "exp/b", changes: { expiresAt: -1 }, at: 6000 }),
  ).toMatchObject({
    ok: false,
    code: "INVALID_ARGUMENT",
  });
});

it("serves each secret's metadata as a frozen object, equal to what a reopened store decodes", async () => {
  const { apply, put, machine, directory } = await fixture();
  await put("svc/key", 1000);
  await apply({
    op: "kv.metadata",
    path: "svc/key",
    changes: {
      rotationPeriodMs: hour,
      rotationOverlapMs: 60_000,
      generator,
      owner: "team-a",
      custom: { tier: "1" },
    },
    at: 1000,
  });
  await put("svc/key", 1000 + 2 * hour, { cas: 1, rotation: true });
  await apply({ op: "kv.rotationFailed", path: "svc/key", error: "generator broke", at: 1000 + 4 * hour });
  await apply({ op: "kv.delete", path: "svc/key", versions: [1], at: 1000 + 5 * hour });
  const served = await machine.metadata("svc/key");
  // The object an apply made is the one served: nothing a reader does to it reaches the next reader.
  expect(served?.versions.get(1)?.retireAt).toBe(1000 + 2 * hour + 60_000);
  expect(() => {
    (served as { owner: string }).owner = "someone else";
  }).toThrow(TypeError);
  expect(() => {
    (served?.versions.get(2) as { destroyed: boolean }).destroyed = true;
  }).toThrow(TypeError);
  expect(() => {
    (served?.versions as Map<number, unknown> | undefined)?.delete(1);
  }).toThrow(TypeError);
  expect(served?.versions.size).toBe(2);
  expect(() => {
    (served?.custom as Record<string, string>).tier = "0";
  }).toThrow(TypeError);
  await machine.close();
  open.splice(open.indexOf(machine), 1);
  const reopened = await fixture(directory);
  expect(await reopened.machine.metadata("svc/key")).toStrictEqual(served);
});
