// Where the SDK resumes a watch whose revision a node no longer holds, against stand-in nodes (real
// gRPC servers over mutual TLS): each node keeps its own history, so one restarted lately refuses
// a revision another still serves. The SDK tries every other endpoint before it reports a gap; a
// node it cannot reach counts as tried, so one that is down does not hold the gap back.

import { Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient, type StrongroomClient, type StrongroomError } from "../../client/index.js";
import {
  ChangeKind,
  SecretsService,
  type WatchEvent,
  type WatchRequest,
} from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { NodeError, toServiceError } from "../../server/errors.js";
import { TestPki } from "../server/pki-fixture.js";
import { eventually } from "../support/eventually.js";
import { StandInNodes } from "./stand-in-node.js";

const pki = new TestPki("sdk-watch-resume");
const standIns = new StandInNodes(pki);
const clients: StrongroomClient[] = [];
afterAll(() => {
  for (const client of clients) client.close();
  standIns.stopAll();
  pki.cleanup();
});

/**
 * A stand-in whose history starts after `historyStart` (it refuses an older resume as a node does)
 * and which, once a watch is in place, sends `events` after the revision it resumes from.
 */
function standIn(historyStart: number, events: readonly WatchEvent[] = []): Promise<string> {
  return standIns.start(SecretsService, {
    watch: (call: ServerWritableStream<WatchRequest, WatchEvent>) => {
      const from = call.request.fromRevision;
      if (from > 0 && from < historyStart) {
        call.emit(
          "error",
          toServiceError(
            new NodeError("HISTORY_COMPACTED", `revision ${from} is older than this node's watch history`),
          ),
        );
        return;
      }
      const headers = new Metadata();
      headers.set("strongroom-revision", String(historyStart));
      call.sendMetadata(headers);
      for (const event of events) if (event.revision > from) call.write(event);
    },
  });
}

/** A port nothing listens on: a node that is down. */
async function downNode(): Promise<string> {
  const address = await standIns.start(SecretsService, {});
  standIns.stopAll();
  return address;
}

function watchThrough(endpoints: string[], fromRevision: number) {
  const files = pki.client("caller");
  const client = createClient({
    endpoints,
    // The tests stage which stand-in the watch opens on first.
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    retry: { baseMs: 10, maxMs: 50 },
  });
  clients.push(client);
  const seen = {
    events: [] as WatchEvent[],
    gaps: [] as StrongroomError[],
    errors: [] as StrongroomError[],
    opens: 0,
  };
  const watch = client.watch("k/", fromRevision, {
    onEvent: (event) => seen.events.push(event),
    onGap: (error) => seen.gaps.push(error),
    onError: (error) => seen.errors.push(error),
    onOpen: () => seen.opens++,
  });
  return { seen, watch };
}

const put = (revision: number) => ({
  revision,
  path: "k/a",
  kind: ChangeKind.CHANGE_KIND_PUT,
  version: revision - 50,
});

it("a revision the first node no longer holds is resumed on another that does, with no gap", async () => {
  const restarted = await standIn(100);
  const holding = await standIn(10, [put(55), put(60)]);
  const { seen, watch } = watchThrough([restarted, holding], 50);
  try {
    await eventually(() => seen.events.length === 2, 5000);
    expect(seen.events.map((event) => event.revision)).toEqual([55, 60]);
    expect(seen.gaps).toEqual([]);
    expect(seen.errors.map((error) => [error.reason, error.details.endpoint])).toEqual([
      ["HISTORY_COMPACTED", restarted],
    ]);
  } finally {
    watch.close();
  }
});

it("one older than every reachable node's history is a gap, once, with a node down among them; then it goes on from now", async () => {
  const down = await downNode();
  const first = await standIn(100);
  const second = await standIn(100);
  const { seen, watch } = watchThrough([first, down, second], 50);
  try {
    await eventually(() => seen.gaps.length > 0 && seen.opens > 0, 5000);
    expect(seen.gaps.map((gap) => gap.reason)).toEqual(["HISTORY_COMPACTED"]);
    // Every endpoint tried first: the two refusals are told as errors, the node down ends the round.
    expect(seen.errors.map((error) => [error.reason, error.details.endpoint])).toEqual([
      ["HISTORY_COMPACTED", first],
      ["HISTORY_COMPACTED", second],
    ]);
  } finally {
    watch.close();
  }
});
