// Model-based test: random sequences of operations run against the LevelDB state machine and a
// plain in-memory model of KV v2 semantics; every result must agree — versions, check-and-set
// failures, deletes, destroys, trimming, expiry, reads and listings. fast-check prints the seed and
// the shrunk counterexample on failure; replay with SECRET_STATE_MODEL_SEED=<seed>.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, expect, it } from "vitest";
import { Barrier, Keyring } from "../../storage/barrier/index.js";
import {
  type ApplyResult,
  encodeCommand,
  type SecretCommand,
  SecretStateMachine,
  type StateError,
} from "../../storage/state/index.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-state-model-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface ModelVersion {
  value: string;
  created: number;
  deleted: boolean;
  destroyed: boolean;
}
interface ModelSecret {
  current: number;
  maxVersions: number;
  casRequired: boolean;
  deleteAfter: number;
  versions: Map<number, ModelVersion>;
}
type Model = Map<string, ModelSecret>;

interface Real {
  machine: SecretStateMachine;
  barrier: Barrier;
  index: number;
  now: number;
}

const paths = ["a", "a/b", "b"];
const decoder = new TextDecoder();

function outcome(result: ApplyResult): string {
  return result.ok ? `ok ${result.version}` : result.code;
}

function newSecret(): ModelSecret {
  return { current: 0, maxVersions: 10, casRequired: false, deleteAfter: 0, versions: new Map() };
}

function trim(secret: ModelSecret): void {
  const kept = [...secret.versions.keys()].sort((a, b) => a - b);
  for (const version of kept.slice(0, Math.max(0, kept.length - secret.maxVersions)))
    secret.versions.delete(version);
}

function expectEqual(actual: string, expected: string, what: string): void {
  if (actual !== expected) throw new Error(`${what}: state machine gave ${actual}, model ${expected}`);
}

async function applyBoth(real: Real, command: SecretCommand): Promise<string> {
  real.index++;
  return outcome(await real.machine.apply(real.index, encodeCommand(command)));
}

class Put implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly path: string,
    readonly value: string,
    readonly cas: number | null,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    real.now += 10;
    const ciphertext = real.barrier.encrypt(this.path, new TextEncoder().encode(this.value));
    const actual = await applyBoth(real, {
      op: "kv.put",
      path: this.path,
      ciphertext,
      cas: this.cas,
      at: real.now,
    });
    const secret = model.get(this.path) ?? newSecret();
    let expected: string;
    if (this.cas === null && secret.casRequired) expected = "CAS_REQUIRED";
    else if (this.cas !== null && this.cas !== secret.current) expected = "CAS_MISMATCH";
    else {
      secret.current++;
      secret.versions.set(secret.current, {
        value: this.value,
        created: real.now,
        deleted: false,
        destroyed: false,
      });
      trim(secret);
      model.set(this.path, secret);
      expected = `ok ${secret.current}`;
    }
    expectEqual(actual, expected, this.toString());
  }
  toString = () => `put(${this.path}, ${this.value}, cas=${this.cas})`;
}

/** A version counted back from the current one (so generated operations hit versions that exist). */
function versionBack(model: Model, path: string, back: number): number {
  return Math.max(1, (model.get(path)?.current ?? 0) - back);
}

class ChangeVersions implements fc.AsyncCommand<Model, Real> {
  private versions: number[] = [];
  constructor(
    readonly op: "kv.delete" | "kv.undelete" | "kv.destroy",
    readonly path: string,
    readonly backs: number[],
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    real.now += 10;
    this.versions = this.backs.map((back) => versionBack(model, this.path, back));
    const actual = await applyBoth(real, {
      op: this.op,
      path: this.path,
      versions: this.versions,
      at: real.now,
    });
    const secret = model.get(this.path);
    if (secret === undefined || secret.current === 0)
      return expectEqual(actual, "NOT_FOUND", this.toString());
    for (const version of this.versions.length === 0 ? [secret.current] : this.versions) {
      const record = secret.versions.get(version);
      if (record === undefined || record.destroyed) continue;
      if (this.op === "kv.delete") record.deleted = true;
      else if (this.op === "kv.undelete") record.deleted = false;
      else record.destroyed = true;
    }
    expectEqual(actual, "ok null", this.toString());
  }
  toString = () => `${this.op}(${this.path}, [${this.versions.join(",")}])`;
}

class SetMetadata implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly path: string,
    readonly maxVersions: number,
    readonly casRequired: boolean,
    readonly deleteAfter: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    real.now += 10;
    const actual = await applyBoth(real, {
      op: "kv.metadata",
      path: this.path,
      changes: {
        maxVersions: this.maxVersions,
        casRequired: this.casRequired,
        deleteVersionAfterMs: this.deleteAfter,
      },
      at: real.now,
    });
    const secret = model.get(this.path) ?? newSecret();
    Object.assign(secret, {
      maxVersions: this.maxVersions,
      casRequired: this.casRequired,
      deleteAfter: this.deleteAfter,
    });
    trim(secret);
    model.set(this.path, secret);
    expectEqual(actual, "ok null", this.toString());
  }
  toString = () =>
    `metadata(${this.path}, max=${this.maxVersions}, cas=${this.casRequired}, after=${this.deleteAfter})`;
}

class DeleteAll implements fc.AsyncCommand<Model, Real> {
  constructor(readonly path: string) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    real.now += 10;
    const actual = await applyBoth(real, { op: "kv.deleteAll", path: this.path, at: real.now });
    expectEqual(actual, model.delete(this.path) ? "ok null" : "NOT_FOUND", this.toString());
  }
  toString = () => `deleteAll(${this.path})`;
}

class Read implements fc.AsyncCommand<Model, Real> {
  private version: number | null = null;
  constructor(
    readonly path: string,
    readonly back: number | null,
    readonly later: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    this.version = this.back === null ? null : versionBack(model, this.path, this.back);
    const now = real.now + this.later;
    const actual = await real.machine.read(this.path, this.version, now).then(
      (found) => `${found.version}=${decoder.decode(real.barrier.decrypt(this.path, found.ciphertext))}`,
      (error: StateError) => error.code,
    );
    const secret = model.get(this.path);
    let expected = "NOT_FOUND";
    if (secret !== undefined && secret.current > 0) {
      const wanted = this.version ?? secret.current;
      const record = secret.versions.get(wanted);
      const expired =
        record !== undefined && secret.deleteAfter > 0 && now >= record.created + secret.deleteAfter;
      if (record !== undefined && !record.deleted && !record.destroyed)
        expected = expired ? "EXPIRED" : `${wanted}=${record.value}`;
    }
    expectEqual(actual, expected, this.toString());
  }
  toString = () => `read(${this.path}, v=${this.version ?? "latest"}, +${this.later}ms)`;
}

class List implements fc.AsyncCommand<Model, Real> {
  constructor(readonly prefix: string) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const actual = (await real.machine.list(this.prefix, null, 1000)).paths.join(",");
    const expected = [...model.keys()]
      .filter((path) => path.startsWith(this.prefix))
      .sort()
      .join(",");
    expectEqual(actual, expected, this.toString());
  }
  toString = () => `list(${this.prefix})`;
}

const path = fc.constantFrom(...paths);
const commands = [
  fc
    .tuple(
      path,
      fc.string({ maxLength: 8 }),
      fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat({ max: 5 }) }),
    )
    .map(([p, v, cas]) => new Put(p, v, cas)),
  fc
    .tuple(
      fc.constantFrom("kv.delete", "kv.undelete", "kv.destroy") as fc.Arbitrary<
        "kv.delete" | "kv.undelete" | "kv.destroy"
      >,
      path,
      fc.array(fc.nat({ max: 4 }), { maxLength: 2 }),
    )
    .map(([op, p, versions]) => new ChangeVersions(op, p, versions)),
  fc
    .tuple(path, fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.constantFrom(0, 20, 50))
    .map(([p, max, cas, after]) => new SetMetadata(p, max, cas, after)),
  path.map((p) => new DeleteAll(p)),
  fc
    .tuple(path, fc.option(fc.nat({ max: 5 }), { nil: null }), fc.constantFrom(0, 10, 20, 50))
    .map(([p, back, later]) => new Read(p, back, later)),
  fc.constantFrom("", "a", "a/", "b").map((prefix) => new List(prefix)),
];

it("agrees with an in-memory model of KV v2 on random operation sequences", {
  timeout: 120_000,
}, async () => {
  const barrier = new Barrier();
  barrier.unseal(Keyring.create(0));
  let run = 0;
  const seed =
    process.env.SECRET_STATE_MODEL_SEED === undefined
      ? undefined
      : Number(process.env.SECRET_STATE_MODEL_SEED);
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 80, size: "max" }), async (sequence) => {
      const directory = join(root, `run-${++run}`);
      const machine = await SecretStateMachine.open(directory);
      const ran: { state?: { model: Model; real: Real } } = {};
      // Each secret's metadata as served from the objects applies made (never decoded from bytes).
      const served = new Map<string, unknown>();
      try {
        await fc.asyncModelRun(
          () => (ran.state = { model: new Map() as Model, real: { machine, barrier, index: 0, now: 1000 } }),
          sequence,
        );
        for (const path of paths) served.set(path, await machine.metadata(path));
      } finally {
        await machine.close();
      }
      // What reached LevelDB behind the applies (several applies' writes coalesced into one
      // LevelDB write) must be what was served: reopened, with no cache, it answers the same.
      if (ran.state === undefined) return;
      const { model, real } = ran.state;
      const reopened = await SecretStateMachine.open(directory);
      try {
        const again: Real = { ...real, machine: reopened };
        for (const path of model.keys()) {
          await new Read(path, null, 0).run(model, again);
          for (let back = 0; back <= 5; back++) await new Read(path, back, 0).run(model, again);
        }
        await new List("").run(model, again);
        // Decoded from LevelDB, the metadata is what the applies' own objects said.
        for (const path of paths) expect(await reopened.metadata(path)).toStrictEqual(served.get(path));
      } finally {
        await reopened.close();
      }
    }),
    { numRuns: 200, ...(seed === undefined ? {} : { seed }) },
  );
});
