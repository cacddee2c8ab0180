// A watch misses no change when its node goes away or falls behind, on a real 3-node cluster of
// child processes whose nodes keep a short history (watch.historyMax 1000), take a snapshot every
// 10 entries and keep none behind it:
// - a quiet watch (nothing changes under its prefix while the cluster moves on past the history)
//   resumes on another node without a gap, because the nodes tell it of their progress;
// - a follower that was paused past the leader's log catches up from a snapshot, which skips the
//   changes it never applied one by one: its watches end (STATE_REPLACED) instead of going on past
//   them in silence, and the SDK resumes on another node, which sends the change it missed;
// - a node cut off from a quorum (the others paused) ends its watches and refuses new ones
//   (NO_LEADER) until it hears them again.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createClient, type StrongroomClient, type StrongroomError } from "../../client/index.js";
import { ChangeKind, type WatchEvent } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { eventually } from "../support/eventually.js";
import { clientsFor, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";
import { NodeProcess, tearDownProcessCluster } from "./process-cluster.js";

const pki = new TestPki("watch-continuity");
const root = mkdtempSync(join(tmpdir(), "strongroom-watch-continuity-"));
const specs = nodeSpecs(3, 39_600, 213);
const configs = writeConfigs(pki, root, specs, () => ({
  raft: {
    tickMs: 20,
    electionTicks: 10,
    heartbeatTicks: 1,
    snapshotEveryEntries: 10,
    snapshotLogToStateRatio: 0,
    retainEntries: 0,
    // Nor does the leader keep sent entries in memory for a follower that lags.
    followerCatchUpBytesMax: 0,
  },
  watch: { historyMax: 1000, progressIntervalMs: 200 },
}));
const processes = specs.map((spec) => new NodeProcess(spec, configs.get(spec.id)?.file ?? ""));
const endpoints = specs.map((spec) => `${spec.host}:${spec.clientPort}`);
const opened: StrongroomClient[] = [];
let rootToken: string | null = null;

const files = pki.client("app");
const tls = { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile };
const bytes = (text: string) => new TextEncoder().encode(text);

function sdk(
  options: { endpoints?: string[]; keepalive?: { intervalMs: number; timeoutMs: number } } = {},
): StrongroomClient {
  const client = createClient({
    endpoints: options.endpoints ?? endpoints,
    // A test that gives the endpoints stages which one is tried first.
    endpointOrder: options.endpoints === undefined ? "random" : "given",
    tls,
    token: () => rootToken,
    deadlineMs: 15_000,
    ...(options.keepalive === undefined ? {} : { keepalive: options.keepalive }),
  });
  opened.push(client);
  return client;
}

beforeAll(async () => {
  await Promise.all(processes.map((node) => node.start()));
  const init = await sdk().sys.init({ shamir: { count: 1, threshold: 1, operatorKeys: [] }, hsm: false });
  const share = init.unsealShares[0] ?? "";
  for (const endpoint of endpoints) await sdk({ endpoints: [endpoint] }).sys.unseal({ share });
  rootToken = init.rootToken;
}, 60_000);

afterAll(() => tearDownProcessCluster({ clients: opened, processes, pki, root }));

/** The position of a follower, once a leader is known. */
async function followerIndex(): Promise<number> {
  for (;;) {
    for (const [index, endpoint] of endpoints.entries()) {
      const view = await sdk({ endpoints: [endpoint] })
        .cluster.status({})
        .catch(() => null);
      if (view?.role === "leader") return (index + 1) % endpoints.length;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A watch through the SDK, with what it delivers. */
function watchWith(client: StrongroomClient, prefix: string) {
  const seen = {
    events: [] as WatchEvent[],
    progress: [] as number[],
    gaps: [] as StrongroomError[],
    errors: [] as StrongroomError[],
    opens: 0,
  };
  const watch = client.watch(prefix, 0, {
    onEvent: (event) => seen.events.push(event),
    onProgress: (revision) => seen.progress.push(revision),
    onGap: (error) => seen.gaps.push(error),
    onError: (error) => seen.errors.push(error),
    onOpen: () => seen.opens++,
  });
  return { seen, watch };
}

it("a follower paused past the leader's log catches up from a snapshot: its watches end, and the SDK's resumes elsewhere with the change it missed", async () => {
  const lagging = await followerIndex();
  const others = endpoints.filter((_, index) => index !== lagging);
  // A watch of its own through raw gRPC (no SDK), and one through the SDK whose pings would not
  // notice the pause (the keepalive's own test is in test/client/sdk.test.ts).
  const raw = clientsFor(endpoints[lagging] ?? "", pki, "app", rootToken);
  const rawStream = raw.secrets.watch({ prefix: "lagging/", fromRevision: 0, progressNotify: false });
  const rawEnded = new Promise<ServiceError>((resolve) => rawStream.on("error", resolve));
  await new Promise((resolve) => rawStream.once("metadata", resolve));
  const client = sdk({
    endpoints: [endpoints[lagging] ?? "", ...others],
    keepalive: { intervalMs: 60_000, timeoutMs: 60_000 },
  });
  const { seen, watch } = watchWith(client, "lagging/");
  try {
    await eventually(() => seen.opens === 1, 5000);
    processes[lagging]?.signal("SIGSTOP");
    let missed: number;
    try {
      const writer = sdk({ endpoints: others });
      const fill = async (count: number) => {
        for (let i = 0; i < count; i++)
          await writer.secrets.put({ path: `filler/${i % 5}`, value: bytes("x") });
      };
      // One at a time, each its own append: more than the leader sends ahead unacknowledged (256
      // messages, raft/core/config.ts), which the node may still read once resumed. The change
      // after them, and three snapshots' worth of entries after it, it can only get by snapshot.
      await fill(300);
      missed = (await writer.secrets.put({ path: "lagging/a", value: bytes("while paused") })).revision;
      await fill(30);
    } finally {
      processes[lagging]?.signal("SIGCONT");
    }
    const ended = await rawEnded;
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(String(ended.metadata.get("strongroom-reason")[0])).toBe("STATE_REPLACED");
    expect(ended.details).toMatch(/catching up from a snapshot/);
    await eventually(() => seen.events.length > 0 && seen.errors.length > 0, 20_000);
    expect(seen.events).toEqual([
      { revision: missed, path: "lagging/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 },
    ]);
    expect(seen.gaps).toEqual([]);
    expect(seen.errors.map((error) => [error.reason, error.details.endpoint])).toEqual([
      ["STATE_REPLACED", endpoints[lagging]],
    ]);
  } finally {
    watch.close();
    rawStream.cancel();
    raw.close();
  }
}, 60_000);

it("a node cut off from the others ends its watches and refuses new ones until it hears them again", async () => {
  const alone = await followerIndex();
  const raw = clientsFor(endpoints[alone] ?? "", pki, "app", rootToken);
  const openWatch = () => {
    const stream = raw.secrets.watch({ prefix: "cut/", fromRevision: 0, progressNotify: false });
    return {
      stream,
      outcome: new Promise<"open" | ServiceError>((resolve) => {
        stream.once("metadata", () => resolve("open"));
        stream.on("error", (error: ServiceError) => resolve(error));
      }),
    };
  };
  const first = openWatch();
  const others = processes.filter((_, index) => index !== alone);
  try {
    expect(await first.outcome).toBe("open");
    const ended = new Promise<ServiceError>((resolve) => first.stream.on("error", resolve));
    // The other two paused: the node keeps running, but no quorum hears it.
    for (const node of others) node.signal("SIGSTOP");
    const pausedAt = performance.now();
    try {
      const end = await ended;
      expect(end.code).toBe(status.UNAVAILABLE);
      expect(end.metadata.get("strongroom-reason")).toEqual(["NO_LEADER"]);
      expect(end.details).toMatch(/hears from too few members to make a quorum/);
      // An election timeout (200 ms here) of silence, then the next check.
      expect(performance.now() - pausedAt).toBeLessThan(3000);
      expect(await openWatch().outcome).toMatchObject({ code: status.UNAVAILABLE });
    } finally {
      for (const node of others) node.signal("SIGCONT");
    }
    await eventually(async () => (await openWatch().outcome) === "open", 10_000);
  } finally {
    raw.close();
  }
});

it("a quiet watch resumes on another node without a gap after the cluster moved on past the nodes' history", async () => {
  const victim = await followerIndex();
  const others = endpoints.filter((_, index) => index !== victim);
  const client = sdk({ endpoints: [endpoints[victim] ?? "", ...others] });
  const { seen, watch } = watchWith(client, "quiet/");
  try {
    await eventually(() => seen.opens === 1, 5000);
    // More changes than a node's history holds, none under the watched prefix (16 at a time).
    const writer = sdk({ endpoints: others });
    let last = 0;
    for (let round = 0; round < 70; round++) {
      const written = await Promise.all(
        Array.from({ length: 16 }, (_, i) => writer.secrets.put({ path: `busy/${i}`, value: bytes("x") })),
      );
      last = Math.max(last, ...written.map((put) => put.revision));
    }
    // The node tells the watch it is up to date with the cluster's revision.
    await eventually(() => (seen.progress.at(-1) ?? 0) >= last, 5000);
    await processes[victim]?.kill();
    const written = await writer.secrets.put({ path: "quiet/a", value: bytes("after") });
    await eventually(() => seen.events.length > 0, 10_000);
    expect(seen.events).toEqual([
      { revision: written.revision, path: "quiet/a", kind: ChangeKind.CHANGE_KIND_PUT, version: 1 },
    ]);
    // Resumed from its last progress: inside the other nodes' history, so no gap.
    expect(seen.gaps).toEqual([]);
    expect(seen.opens).toBe(2);
  } finally {
    watch.close();
  }
}, 60_000);
