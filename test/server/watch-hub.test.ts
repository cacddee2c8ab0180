// The watch hub on its own, deterministic: events by prefix, resume from a revision, a revision
// older than the history refused, a consumer that stops reading cut off at its bound (memory stays
// bounded), and the cap on watchers.

import { describe, expect, it } from "vitest";
import { ChangeKind, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import type { NodeError } from "../../server/errors.js";
import { WatchHub, type WatchSink } from "../../server/watch-hub.js";

function collector(accepting = () => true): WatchSink & { events: WatchEvent[]; ended: NodeError | null } {
  const sink = {
    events: [] as WatchEvent[],
    ended: null as NodeError | null,
    push(event: WatchEvent) {
      sink.events.push(event);
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
    applied = 20;
    hub.reset();
    expect(() => hub.subscribe("k/", 13, collector())).toThrow(/older than this node's watch history/);
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
