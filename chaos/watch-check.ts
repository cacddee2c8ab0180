// What the run's watchers saw. SDK watches of the workload's prefix, opened before it starts (one
// per node, each first on its own node), follow it through every fault: a node killed, paused or
// cut off, a follower catching up from a snapshot. After the heal each must have delivered, for
// every key, exactly the versions the key reached (1, 2, ... its final version), in order, each
// once, with revisions that only grow; and no watcher may have been told of a gap (changes it may
// have missed). A watch misses nothing and repeats nothing, whatever the faults.

import type { StrongroomClient, StrongroomError, Watch } from "../client/index.js";
import { ChangeKind, type WatchEvent } from "../proto/gen/strongroom/v1/secrets.gen.js";

/** One SDK watch of the workload's keys, and what it delivered. */
export class WatchRecorder {
  /** Each key's versions, as delivered. */
  readonly versions = new Map<string, number[]>();
  readonly problems: string[] = [];
  /** Failures it reconnected after, by reason ("" for a transport failure: its status name). */
  readonly reconnections = new Map<string, number>();
  events = 0;
  /** The stream was in place on a node at least once. */
  opened = false;
  private lastRevision = 0;
  private closed = false;
  private readonly watch: Watch;

  constructor(
    readonly name: string,
    private readonly client: Pick<StrongroomClient, "watch" | "close">,
    prefix: string,
  ) {
    this.watch = client.watch(prefix, 0, {
      onEvent: (event) => this.take(event),
      onOpen: () => {
        this.opened = true;
      },
      onError: (error) => {
        const reason = error.reason || error.statusName;
        this.reconnections.set(reason, (this.reconnections.get(reason) ?? 0) + 1);
      },
      onGap: (error) => this.problems.push(`${name}: told of a gap: ${error.message}`),
      onEnd: (error: StrongroomError) => this.problems.push(`${name}: ended for good: ${error.message}`),
    });
  }

  /** The last version delivered for `key` (0: none). */
  lastVersion(key: string): number {
    return this.versions.get(key)?.at(-1) ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch.close();
    this.client.close();
  }

  private take(event: WatchEvent): void {
    this.events++;
    if (event.revision <= this.lastRevision)
      this.problems.push(`${this.name}: revision ${event.revision} after ${this.lastRevision}`);
    this.lastRevision = Math.max(this.lastRevision, event.revision);
    if (event.kind !== ChangeKind.CHANGE_KIND_PUT) {
      this.problems.push(`${this.name}: ${ChangeKind[event.kind]} of ${event.path} (the workload only puts)`);
      return;
    }
    const seen = this.versions.get(event.path) ?? [];
    seen.push(event.version);
    this.versions.set(event.path, seen);
  }
}

export interface WatchCheck {
  readonly watchers: number;
  /** Events delivered, all watchers together. */
  readonly events: number;
  /** Failures the watchers reconnected after, by reason. */
  readonly reconnections: Readonly<Record<string, number>>;
  readonly problems: readonly string[];
  readonly pass: boolean;
}

/** Checks each recorder against every key's final version (0: never written). */
export function checkWatches(
  recorders: readonly WatchRecorder[],
  finalVersions: ReadonlyMap<string, number>,
): WatchCheck {
  const problems: string[] = [];
  const reconnections: Record<string, number> = {};
  for (const recorder of recorders) {
    problems.push(...recorder.problems);
    for (const [reason, count] of recorder.reconnections)
      reconnections[reason] = (reconnections[reason] ?? 0) + count;
    for (const [key, final] of finalVersions) {
      const delivered = recorder.versions.get(key) ?? [];
      const expected = Array.from({ length: final }, (_, index) => index + 1);
      if (
        delivered.length === expected.length &&
        delivered.every((version, index) => version === expected[index])
      )
        continue;
      problems.push(
        `${recorder.name}: ${key} delivered ${describe(delivered)}, expected versions 1-${final}`,
      );
    }
    for (const key of recorder.versions.keys())
      if (!finalVersions.has(key))
        problems.push(`${recorder.name}: events for ${key}, which the workload never wrote`);
  }
  return {
    watchers: recorders.length,
    events: recorders.reduce((sum, recorder) => sum + recorder.events, 0),
    reconnections,
    problems,
    pass: problems.length === 0,
  };
}

/** A version list, short: its length and where it first goes wrong. */
function describe(versions: readonly number[]): string {
  const wrong = versions.findIndex((version, index) => version !== index + 1);
  if (wrong === -1) return `versions 1-${versions.length}`;
  const around = versions.slice(Math.max(0, wrong - 2), wrong + 3).join(", ");
  return `${versions.length} versions, ${versions[wrong]} where ${wrong + 1} belongs (${around})`;
}
