// Crash safety of the Raft log stores with real processes: a child appends, rewrites and compacts
// in a loop and is SIGKILLed at a random moment, again and again. After every kill the store must
// open without repair and hold exactly what the child had acknowledged (persisted, so promised to
// the cluster), plus the change in flight whole or not at all; the snapshot's file whole, and no
// other snapshot file left. The segment store (the nodes' own) with small segments, so that kills
// land while segments start and go; the LevelDB store (read once, to move an older node's log).
// Cycles: 200 and 50 in npm test; RAFT_LOG_CRASH_CYCLES for a soak of each (npm run soak:raft-log).
// Seeded: RAFT_LOG_CRASH_SEED replays a run.

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SeededRandom } from "../../raft/core/index.js";
import { bundleChild } from "../support/bundle-child.js";
import { snapshotData } from "../support/snapshot-data.js";
import { type CrashedStoreKind, openCrashedStore } from "./fixtures/crashed-log-store.js";
import { entryData } from "./fixtures/raft-log-data.js";

const soakCycles = process.env.RAFT_LOG_CRASH_CYCLES;
const stores: readonly { kind: CrashedStoreKind; cycles: number }[] = [
  { kind: "segment", cycles: Number(soakCycles ?? 200) },
  { kind: "level", cycles: Number(soakCycles ?? 50) },
];
const seed = Number(process.env.RAFT_LOG_CRASH_SEED ?? 20261127);
const root = mkdtempSync(join(tmpdir(), "strongroom-raft-log-crash-"));
let writer = "";

beforeAll(async () => {
  writer = await bundleChild(new URL("./fixtures/raft-log-writer.ts", import.meta.url), "raft-log-writer", [
    "classic-level",
  ]);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What the store must hold: entries (index → term) above the compaction offset, and the snapshot. */
interface LogModel {
  terms: Map<number, number>;
  offset: number;
  snapshotIndex: number;
}

type Change =
  | { kind: "append"; first: number; last: number; term: number }
  | { kind: "snapshot"; index: number }
  | { kind: "compact"; through: number };

function parseChange(words: string[]): Change {
  const [kind, a, b, c] = words;
  if (kind === "append") return { kind, first: Number(a), last: Number(b), term: Number(c) };
  if (kind === "snapshot") return { kind, index: Number(a) };
  if (kind === "compact") return { kind, through: Number(a) };
  throw new Error(`unknown change: ${words.join(" ")}`);
}

function applyChange(model: LogModel, change: Change): LogModel {
  const terms = new Map(model.terms);
  switch (change.kind) {
    case "append":
      // Entries from `first` on are replaced (conflict truncation), whatever followed them.
      for (const index of [...terms.keys()]) if (index >= change.first) terms.delete(index);
      for (let index = change.first; index <= change.last; index++) terms.set(index, change.term);
      return { ...model, terms };
    case "snapshot":
      return { ...model, snapshotIndex: change.index };
    case "compact":
      for (const index of [...terms.keys()]) if (index <= change.through) terms.delete(index);
      return { ...model, terms, offset: change.through };
  }
}

function describeModel(model: LogModel): string {
  const indexes = [...model.terms.keys()].sort((a, b) => a - b);
  return `offset ${model.offset}, snapshot ${model.snapshotIndex}, entries ${indexes[0] ?? "-"}..${indexes.at(-1) ?? "-"}`;
}

/**
 * When to kill: this long after it began its first change (mid-writing; counted from the first
 * change, not from start-up, so a machine slowed by other work still kills it while it writes), or
 * this long after it was told to open the store (maybe mid-opening, recovering the log). Not timed
 * from the spawn: Node's own start-up takes longer than these delays, and a kill there tests nothing.
 */
type KillMoment = { readonly afterWritingMs: number } | { readonly afterGoMs: number };

interface RunResult {
  readonly acknowledged: LogModel;
  readonly inFlight: Change | null;
  readonly acks: number;
  readonly errors: string;
}

/** A writer process started and loading its modules; it touches the store only once it runs. */
interface Writer {
  /** Lets it open the store and write, SIGKILLs it at `moment`; `start` is what the store holds. */
  runAndKill(moment: KillMoment, start: LogModel): Promise<RunResult>;
}

/**
 * Starts the writer. Node's start-up takes longer than the checks of the store after a kill, so
 * the next writer starts while they run: it waits for "go", sent only once they are done.
 */
function startWriter(kind: CrashedStoreKind, directory: string, childSeed: number): Writer {
  const child = spawn(process.execPath, [writer, directory, String(childSeed), kind], {
    cwd: new URL("../..", import.meta.url).pathname,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let errors = "";
  child.stderr.on("data", (chunk: Buffer) => {
    errors += chunk.toString();
  });
  const lines: string[] = [];
  let onLine: ((line: string) => void) | null = null;
  createInterface({ input: child.stdout }).on("line", (line) => {
    if (onLine === null) lines.push(line);
    else onLine(line);
  });
  let spawnError: Error | null = null;
  child.on("error", (error) => {
    spawnError = error;
  });
  // "close", not "exit": by then every line it printed before it died has been read.
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return {
    runAndKill(moment, start) {
      let acknowledged = start;
      let inFlight: Change | null = null;
      let acks = 0;
      const kill = () => child.kill("SIGKILL");
      let timer: NodeJS.Timeout | undefined;
      const take = (line: string) => {
        const [word, ...rest] = line.split(" ");
        if (word === "loaded") {
          child.stdin.end("go\n");
          if ("afterGoMs" in moment) timer = setTimeout(kill, moment.afterGoMs);
        } else if (word === "begin") {
          inFlight = parseChange(rest);
          if (timer === undefined && "afterWritingMs" in moment)
            timer = setTimeout(kill, moment.afterWritingMs);
        } else if (word === "ack" && inFlight !== null) {
          acknowledged = applyChange(acknowledged, inFlight);
          inFlight = null;
          acks++;
        }
      };
      for (const line of lines.splice(0)) take(line);
      onLine = take;
      return closed.then(() => {
        clearTimeout(timer);
        if (spawnError !== null) throw spawnError;
        return { acknowledged, inFlight, acks, errors };
      });
    },
  };
}

for (const { kind, cycles } of stores)
  it(`${kind} store: keeps every acknowledged change through ${cycles} SIGKILLs (seed ${seed})`, {
    timeout: 600_000,
  }, async () => {
    const random = new SeededRandom(seed);
    const directory = join(root, kind);
    let model: LogModel = { terms: new Map(), offset: 0, snapshotIndex: 0 };
    let totalAcks = 0;
    let killedMidWrite = 0;
    let next = startWriter(kind, directory, random.nextUint32());
    for (let cycle = 1; cycle <= cycles; cycle++) {
      // Most kills land while it writes; one in five during start-up (opening, recovering the log).
      const moment: KillMoment = random.chance(0.8)
        ? { afterWritingMs: random.nextInt(40) }
        : { afterGoMs: random.nextInt(20) };
      const run = await next.runAndKill(moment, model);
      if (cycle < cycles) next = startWriter(kind, directory, random.nextUint32());
      const context = `cycle ${cycle} (replay with RAFT_LOG_CRASH_SEED=${seed})`;
      expect(run.errors, `${context}: the writer failed`).toBe("");
      totalAcks += run.acks;
      if (run.inFlight !== null) killedMidWrite++;

      // The store opens without repair and holds what was acknowledged, plus the change in flight
      // either whole or not at all (each change is one atomic, synced batch).
      const store = await openCrashedStore(kind, directory);
      const state = await store.load();
      const snapshotBytes = await snapshotData(store, state.snapshot);
      await store.close();
      const stored: LogModel = {
        terms: new Map(state.entries.map((entry) => [entry.index, entry.term])),
        offset: state.offset.index,
        snapshotIndex: state.snapshot?.meta.index ?? 0,
      };
      for (const entry of state.entries)
        expect(entry.data, `${context}: entry ${entry.index}`).toEqual(entryData(entry.index, entry.term));
      // The snapshot's file is whole, and no other file (a half-written or replaced one) is left.
      if (state.snapshot !== null) {
        const { index, term } = state.snapshot.meta;
        expect(snapshotBytes, `${context}: snapshot ${index}`).toEqual(entryData(index, term));
      }
      expect(readdirSync(join(directory, "snapshots")), `${context}: snapshot files`).toHaveLength(
        state.snapshot === null ? 0 : 1,
      );
      const candidates = [
        run.acknowledged,
        ...(run.inFlight === null ? [] : [applyChange(run.acknowledged, run.inFlight)]),
      ];
      const match = candidates.find(
        (candidate) =>
          candidate.offset === stored.offset &&
          candidate.snapshotIndex === stored.snapshotIndex &&
          candidate.terms.size === stored.terms.size &&
          [...candidate.terms].every(([index, term]) => stored.terms.get(index) === term),
      );
      expect(
        match,
        `${context}: the store holds ${describeModel(stored)}; expected ${candidates.map(describeModel).join(" or ")}`,
      ).toBeDefined();
      model = match ?? stored;
    }
    // The run must have exercised what it claims: kills landed while the writer was working.
    expect(killedMidWrite).toBeGreaterThan(cycles * 0.6);
    expect(totalAcks).toBeGreaterThan(cycles * 5);
  });
