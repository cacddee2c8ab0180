// The watch hub on its own, deterministic: events by prefix, resume from a revision, a revision
// older than the history refused, progress told to the watches that asked (never past a change
// not sent yet), every watch ended while the state is replaced, a consumer that stops reading cut
// off at its bound (memory stays bounded), and the cap on watchers.

import { describe, expect, it } from "vitest";
import { ChangeKind, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { NodeError } from "../../server/errors.js";
import { WatchHub, type WatchSink } from "../../server/watch-hub.js";

interface Collector extends WatchSink {
  readonly events: WatchEvent[];
  /** What it was told in order: events, and progress as its revision. */
  readonly told: (WatchEvent | number)[];
  ended: NodeError | null;
}

function collector(accepting = () => true): Collector {
  const sink: Collector = {
    events: [],
    told: [],
    ended: null,
    push(event: WatchEvent) {
      sink.events.push(event);
      sink.told.push(event);
      return accepting();
    },
    progress(revision: number) {
      sink.told.push(revision);
      return accepting();
    },
    end(error: NodeError) {
      sink.ended = error;
    },
  };
  return sink;
}

const put = (path: string) => ({
  op: "kv.put" as const,
  path,
  ciphertext: new Uint8Array(0),
  cas: null,
  at: 0,
});

describe("WatchHub", () => {
  it("sends each watcher the changes under its prefix, with revision, kind and version", () => {
    const hub = new WatchHub({ historyMax: 100, queueMax: 10, watchersMax: 10 }, () => 0);
    const app = collector();
    const all = collector();
    hub.subscribe("app/", 0, app);
    hub.subscribe("", 0, all);
    hub.record(5, put("app/db"), 1);
    hub.record(6, put("other/x"), 1);
    hub.record(7, { op: "kv.delete", path: "app/db", versions: [], at: 0 }, null);
    hub.record(8, { op: "sys.put", area: "policy", path: "p", value: new Uint8Array(0), at: 0 }, null);
    expect(app.events).toEqual([
      { revision: 5, path: "app/db", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 },
      { revision: 7, path: "app/db", kind: ChangeKind.CHANGE_KIND_DELETE, version: 0 },
    ]);
    expect(all.events.map((event) => event.revision)).toEqual([5, 6, 7]);
  });

  it("resumes after a revision from its history, and refuses one older than the history", () => {
    let applied = 10;
    const hub = new WatchHub({ historyMax: 3, queueMax: 10, watchersMax: 10 }, () => applied);
    for (let revision = 11; revision <= 15; revision++) hub.record(revision, put(`k/${revision}`), 1);
    const resumed = collector();
    hub.subscribe("k/", 13, resumed);
    expect(resumed.events.map((event) => event.revision)).toEqual([14, 15]);
    expect(() => hub.subscribe("k/", 11, collector())).toThrow(
      /revision 11 is older than this node's watch history \(it starts after 12\)/,
    );
    // A snapshot restored at index 20: nothing before it can be replayed.
    hub.replacing(new NodeError("STATE_REPLACED", "ended"), new NodeError("STATE_REPLACED", "wait"));
    applied = 20;
    hub.replaced();
    expect(() => hub.subscribe("k/", 13, collector())).toThrow(/older than this node's watch history/);
  });

  it("ends every watch when the state is replaced, refuses new ones and tells no progress until it is in", () => {
    let applied = 10;
    const hub = new WatchHub({ historyMax: 100, queueMax: 10, watchersMax: 10 }, () => applied);
    const open = collector();
    hub.subscribe("k/", 0, open, true);
    hub.record(11, put("k/a"), 1);
    applied = 11;
    hub.replacing(
      new NodeError("STATE_REPLACED", "catching up from a snapshot"),
      new NodeError("STATE_REPLACED", "loading a snapshot"),
    );
    // The snapshot moves the state to 40 before the hub hears it is in: no progress claims 40.
    applied = 40;
    hub.sendProgress();
    expect(open.ended?.message).toBe("catching up from a snapshot");
    expect(open.told).toEqual([{ revision: 11, path: "k/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 }]);
    expect(hub.watcherCount()).toBe(0);
    expect(() => hub.subscribe("k/", 0, collector())).toThrow("loading a snapshot");
    hub.replaced();
    const after = collector();
    hub.subscribe("k/", 40, after, true);
    expect(() => hub.subscribe("k/", 11, collector())).toThrow(/it starts after 40/);
  });

  it("a node removed from the cluster ends its watches and starts none again", () => {
    const hub = new WatchHub({ historyMax: 100, queueMax: 10, watchersMax: 10 }, () => 10);
    const open = collector();
    hub.subscribe("", 0, open, true);
    hub.retire(new NodeError("REMOVED", "removed"));
    expect(open.ended?.code).toBe("REMOVED");
    expect(() => hub.subscribe("", 0, collector())).toThrow("removed");
    expect(() => hub.subscribe("", 0, collector())).toThrow("removed");
  });

  it("tells a watch that asked the revision it is up to date with, never past a change it was not sent", () => {
    let applied = 10;
    const hub = new WatchHub({ historyMax: 100, queueMax: 10, watchersMax: 10 }, () => applied);
    let accepting = true;
    const asked = collector(() => accepting);
    const silent = collector();
    hub.subscribe("k/", 0, asked, true);
    hub.subscribe("k/", 0, silent);
    // Nothing applied since it opened: nothing to tell.
    hub.sendProgress();
    expect(asked.told).toEqual([]);
    // Changes elsewhere move the cluster on: progress to the applied revision, once.
    hub.record(11, put("other/x"), 1);
    hub.record(12, { op: "sys.put", area: "policy", path: "p", value: new Uint8Array(0), at: 0 }, null);
    applied = 12;
    hub.sendProgress();
    hub.sendProgress();
    expect(asked.told).toEqual([12]);
    // A change it was sent, then more elsewhere: the change, then progress past it.
    hub.record(13, put("k/a"), 1);
    hub.record(14, put("other/y"), 1);
    applied = 14;
    hub.sendProgress();
    expect(asked.told.slice(1)).toEqual([
      { revision: 13, path: "k/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 },
      14,
    ]);
    // A consumer that cannot take more: its change waits queued, and no progress passes it.
    accepting = false;
    hub.record(15, put("k/b"), 1);
    hub.record(16, put("k/c"), 1);
    hub.record(17, put("other/z"), 1);
    applied = 17;
    hub.sendProgress();
    expect(asked.told.slice(3).map((told) => (typeof told === "number" ? told : told.revision))).toEqual([
      15,
    ]);
    accepting = true;
    hub.drained(asked);
    hub.sendProgress();
    expect(asked.told.slice(3).map((told) => (typeof told === "number" ? told : told.revision))).toEqual([
      15, 16, 17,
    ]);
    // A watch that did not ask is never told.
    expect(silent.told.every((told) => typeof told !== "number")).toBe(true);
  });

  it("queues while the consumer cannot take more, flushes on drain, and cuts it off past the bound", () => {
    const hub = new WatchHub({ historyMax: 100, queueMax: 5, watchersMax: 10 }, () => 0);
    let accepting = false;
    const slow = collector(() => accepting);
    hub.subscribe("", 0, slow);
    hub.record(1, put("a"), 1);
    for (let revision = 2; revision <= 4; revision++) hub.record(revision, put("a"), revision);
    expect(slow.events).toHaveLength(1);
    accepting = true;
    hub.drained(slow);
    expect(slow.events.map((event) => event.revision)).toEqual([1, 2, 3, 4]);
    accepting = false;
    hub.record(5, put("a"), 5);
    for (let revision = 6; revision <= 12; revision++) hub.record(revision, put("a"), revision);
    expect(slow.ended?.code).toBe("RESOURCE_EXHAUSTED");
    expect(slow.ended?.message).toMatch(/fell more than 5 events behind/);
    expect(hub.watcherCount()).toBe(0);
  });

  it("serves at most watchersMax watches", () => {
    const hub = new WatchHub({ historyMax: 100, queueMax: 5, watchersMax: 2 }, () => 0);
    const stop = hub.subscribe("", 0, collector());
    hub.subscribe("", 0, collector());
    expect(() => hub.subscribe("", 0, collector())).toThrow("this node serves at most 2 watches");
    stop();
    expect(() => hub.subscribe("", 0, collector())).not.toThrow();
  });
});
