// Watch: changes to secrets, as they are applied on this node, delivered to the streams that
// asked for their prefix. A bounded history of recent changes lets a consumer that lost its stream
// resume from the last revision it saw; one older than the history is refused (list and start
// over), as etcd refuses a compacted revision. A watcher that asked for progress is told, now and
// then, the revision it is up to date with although nothing under its prefix changed: a quiet
// prefix's last change soon falls out of a busy cluster's history, its last progress does not.
// Every watcher has a bounded queue: a consumer that stops reading is cut off with a clear error
// instead of growing the node's memory.

import { ChangeKind, type WatchEvent } from "../proto/gen/strongroom/v1/secrets.gen.js";
import type { SecretCommand } from "../storage/state/index.js";
import { NodeError } from "./errors.js";

export interface WatchLimits {
  /** Changes kept for resuming. */
  readonly historyMax: number;
  /** Events queued for one watcher that is not reading before it is cut off. */
  readonly queueMax: number;
  /** Concurrent watchers on this node. */
  readonly watchersMax: number;
}

export const defaultWatchLimits: WatchLimits = { historyMax: 10_000, queueMax: 1_000, watchersMax: 1_000 };

/** Where a watcher's events go: `push` says whether the consumer can take more right now. */
export interface WatchSink {
  push(event: WatchEvent): boolean;
  /** Every change under the prefix up to `revision` was pushed (as push, says whether it can take more). */
  progress(revision: number): boolean;
  /** Called once when the hub ends the watch (with the reason). */
  end(error: NodeError): void;
}

interface Watcher {
  readonly prefix: string;
  readonly sink: WatchSink;
  readonly queue: WatchEvent[];
  blocked: boolean;
  /** Whether it asked for progress (sendProgress). */
  readonly progress: boolean;
  /** The revision it is known to be up to date with: its last event or progress pushed. */
  sentRevision: number;
}

const kinds: Partial<Record<SecretCommand["op"], ChangeKind>> = {
  "kv.put": ChangeKind.CHANGE_KIND_PUT,
  "kv.delete": ChangeKind.CHANGE_KIND_DELETE,
  "kv.undelete": ChangeKind.CHANGE_KIND_UNDELETE,
  "kv.destroy": ChangeKind.CHANGE_KIND_DESTROY,
  "kv.metadata": ChangeKind.CHANGE_KIND_METADATA,
  // A failed rotation changes the metadata (its failure count and reason).
  "kv.rotationFailed": ChangeKind.CHANGE_KIND_METADATA,
  "kv.deleteAll": ChangeKind.CHANGE_KIND_DELETE_ALL,
};

export class WatchHub {
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  /** The oldest revision a resume can start after (events after it are all in the history). */
  private historyStart = 0;
  /** Why a watch cannot start now (the state being replaced, the node removed), or null. */
  private refusal: NodeError | null = null;

  constructor(
    private readonly limits: WatchLimits = defaultWatchLimits,
    /** The revision of the last entry this node applied. */
    private readonly appliedRevision: () => number,
  ) {
    this.historyStart = appliedRevision();
  }

  /** Records an applied command (only secret changes become events). */
  record(revision: number, command: SecretCommand, version: number | null): void {
    const kind = kinds[command.op];
    if (kind === undefined || !("path" in command)) return;
    const event: WatchEvent = { revision, path: command.path, kind, version: version ?? 0 };
    this.history.push(event);
    if (this.history.length > this.limits.historyMax) {
      const dropped = this.history.shift();
      this.historyStart = dropped?.revision ?? this.historyStart;
    }
    for (const watcher of this.watchers) {
      if (event.path.startsWith(watcher.prefix)) this.deliver(watcher, event);
    }
  }

  /**
   * The state is about to be replaced wholesale: by a snapshot from the leader (a follower too far
   * behind to be sent entries), or by a backup's records (the cluster restored). The changes it
   * skips are never recorded here, so every watch ends now with `error` rather than go on past
   * them in silence; until replaced(), none starts (`refusal`) and no progress is told.
   */
  replacing(error: NodeError, refusal: NodeError): void {
    this.refusal = refusal;
    this.history.length = 0;
    this.endAll(error);
  }

  /**
   * The node was removed from the cluster: its state moves no more, so a watch here would wait
   * forever. Every watch ends with `error`, and none starts again.
   */
  retire(error: NodeError): void {
    this.refusal = error;
    this.endAll(error);
  }

  /** The new state is in: history starts again after its revision. */
  replaced(): void {
    this.refusal = null;
    this.history.length = 0;
    this.historyStart = this.appliedRevision();
  }

  /**
   * Starts a watch: replays the history after `fromRevision` (0: none), then follows new changes.
   * Returns the function that ends it.
   */
  subscribe(prefix: string, fromRevision: number, sink: WatchSink, progress = false): () => void {
    if (this.refusal !== null) throw this.refusal;
    if (this.watchers.size >= this.limits.watchersMax) {
      throw new NodeError(
        "RESOURCE_EXHAUSTED",
        `this node serves at most ${this.limits.watchersMax} watches`,
      );
    }
    if (fromRevision > 0 && fromRevision < this.historyStart) {
      throw new NodeError(
        "HISTORY_COMPACTED",
        `revision ${fromRevision} is older than this node's watch history (it starts after ${this.historyStart}): list, then watch from now`,
      );
    }
    const watcher: Watcher = { prefix, sink, queue: [], blocked: false, progress, sentRevision: 0 };
    this.watchers.add(watcher);
    if (fromRevision > 0) {
      for (const event of this.history) {
        if (event.revision > fromRevision && event.path.startsWith(prefix)) this.deliver(watcher, event);
      }
    }
    // Up to date with what this node applied (its first progress says so only once it moves on).
    watcher.sentRevision = Math.max(watcher.sentRevision, this.appliedRevision());
    return () => this.watchers.delete(watcher);
  }

  /**
   * Tells each watcher that asked for progress the revision this node has applied, when that is
   * past its last event or progress, unless it has events still queued (a progress must never
   * pass a change it has not been sent) or cannot take more. Called every watch.progressIntervalMs.
   * Every change up to the applied revision has been recorded: the state machine tells the hub of
   * a change in the same turn as it moves its applied index.
   */
  sendProgress(): void {
    if (this.refusal !== null) return;
    const revision = this.appliedRevision();
    for (const watcher of this.watchers) {
      if (!watcher.progress || watcher.blocked || watcher.queue.length > 0) continue;
      if (watcher.sentRevision >= revision) continue;
      watcher.sentRevision = revision;
      watcher.blocked = !watcher.sink.progress(revision);
    }
  }

  /** The consumer can take more: flushes what was queued while it could not. */
  drained(sinkOwner: WatchSink): void {
    for (const watcher of this.watchers) {
      if (watcher.sink !== sinkOwner) continue;
      watcher.blocked = false;
      while (watcher.queue.length > 0 && !watcher.blocked) {
        const event = watcher.queue.shift();
        if (event === undefined) continue;
        watcher.sentRevision = event.revision;
        watcher.blocked = !watcher.sink.push(event);
      }
    }
  }

  /**
   * Ends every watch with `error` (the node sealed: it can no longer check a watcher's access, so
   * its clients should move to another node now, not at the next change, which may be far off).
   */
  endAll(error: NodeError): void {
    const ending = [...this.watchers];
    this.watchers.clear();
    for (const watcher of ending) {
      watcher.queue.length = 0;
      watcher.sink.end(error);
    }
  }

  watcherCount(): number {
    return this.watchers.size;
  }

  private deliver(watcher: Watcher, event: WatchEvent): void {
    if (!watcher.blocked) {
      watcher.sentRevision = event.revision;
      watcher.blocked = !watcher.sink.push(event);
      return;
    }
    watcher.queue.push(event);
    if (watcher.queue.length > this.limits.queueMax) {
      this.watchers.delete(watcher);
      watcher.queue.length = 0;
      watcher.sink.end(
        new NodeError(
          "RESOURCE_EXHAUSTED",
          `the watcher fell more than ${this.limits.queueMax} events behind; resume from the last revision it received`,
        ),
      );
    }
  }
}
