// The chaos run's watch check on its own: a watcher that delivered every version of every key once
// and in order passes; one that missed a version, repeated one, went back in revision, saw a key
// never written, or was told of a gap fails, each with a problem that says so.

import { expect, it } from "vitest";
import { checkWatches, WatchRecorder } from "../../chaos/watch-check.js";
import type { StrongroomClient, WatchHandlers } from "../../client/index.js";
import { StrongroomError } from "../../client/index.js";
import { ChangeKind } from "../../proto/gen/strongroom/v1/secrets.gen.js";

/** A recorder over a stand-in for the SDK's watch: the test plays the stream's events. */
function recorder(name: string): { recorder: WatchRecorder; handlers: () => WatchHandlers } {
  let captured: WatchHandlers | null = null;
  const client: Pick<StrongroomClient, "watch" | "close"> = {
    watch: (_prefix, _from, handlers) => {
      captured = handlers;
      return { close: () => {} };
    },
    close: () => {},
  };
  const made = new WatchRecorder(name, client, "chaos/");
  return {
    recorder: made,
    handlers: () => {
      if (captured === null) throw new Error("no watch opened");
      return captured;
    },
  };
}

const put = (revision: number, path: string, version: number) => ({
  revision,
  path,
  kind: ChangeKind.CHANGE_KIND_PUT,
  version,
});

it("passes a watcher that delivered every version of every key once, in order", () => {
  const { recorder: watcher, handlers } = recorder("w1");
  handlers().onOpen?.();
  handlers().onEvent(put(5, "chaos/k0", 1));
  handlers().onError?.(new StrongroomError("dropped", 14, ""));
  handlers().onEvent(put(7, "chaos/k1", 1));
  handlers().onEvent(put(9, "chaos/k0", 2));
  const check = checkWatches(
    [watcher],
    new Map([
      ["chaos/k0", 2],
      ["chaos/k1", 1],
      ["chaos/k2", 0],
    ]),
  );
  expect(watcher.opened).toBe(true);
  expect(check).toEqual({
    watchers: 1,
    events: 3,
    reconnections: { UNAVAILABLE: 1 },
    problems: [],
    pass: true,
  });
});

it("fails a watcher that missed, repeated or reordered, saw a stranger key, or was told of a gap", () => {
  const { recorder: missing, handlers: missingHandlers } = recorder("missing");
  missingHandlers().onEvent(put(5, "chaos/k0", 1));
  missingHandlers().onEvent(put(9, "chaos/k0", 3));
  const { recorder: repeated, handlers: repeatedHandlers } = recorder("repeated");
  repeatedHandlers().onEvent(put(5, "chaos/k0", 1));
  repeatedHandlers().onEvent(put(5, "chaos/k0", 1));
  repeatedHandlers().onEvent(put(9, "chaos/k0", 2));
  repeatedHandlers().onEvent(put(10, "chaos/k0", 3));
  repeatedHandlers().onEvent(put(11, "chaos/other", 1));
  const { recorder: gapped, handlers: gappedHandlers } = recorder("gapped");
  gappedHandlers().onGap?.(
    new StrongroomError("revision 4 is older than this node's watch history", 11, "HISTORY_COMPACTED"),
  );
  gappedHandlers().onEvent(put(5, "chaos/k0", 1));
  gappedHandlers().onEvent(put(9, "chaos/k0", 2));
  gappedHandlers().onEvent(put(10, "chaos/k0", 3));
  const check = checkWatches([missing, repeated, gapped], new Map([["chaos/k0", 3]]));
  expect(check.pass).toBe(false);
  expect(check.problems).toEqual([
    "missing: chaos/k0 delivered 2 versions, 3 where 2 belongs (1, 3), expected versions 1-3",
    "repeated: revision 5 after 5",
    "repeated: chaos/k0 delivered 4 versions, 1 where 2 belongs (1, 1, 2, 3), expected versions 1-3",
    "repeated: events for chaos/other, which the workload never wrote",
    "gapped: told of a gap: revision 4 is older than this node's watch history",
  ]);
});
