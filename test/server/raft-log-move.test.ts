// A node of an earlier version kept its Raft log in LevelDB (<data>/raft). Started by this version,
// it copies that log into segment files (<data>/raft-log), removes the old one, and serves what it
// held: the cluster's seal and its secrets, at the same log indexes, as before the upgrade.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { LevelLogStore } from "../../storage/raft-log/level-log-store.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import { snapshotData } from "../support/snapshot-data.js";
import { call, InProcessCluster, nodeSpecs, writeConfigs } from "./cluster-harness.js";
import { TestPki } from "./pki-fixture.js";

// One node on 127.0.0.242, ports from 61500.
const pki = new TestPki("raft-log-move");
const root = mkdtempSync(join(tmpdir(), "strongroom-raft-log-move-"));
const [spec] = nodeSpecs(1, 61_500, 241);
const cluster = new InProcessCluster(pki);

afterAll(async () => {
  await cluster.stop();
  pki.cleanup();
  rmSync(root, { recursive: true, force: true });
});

/** Rewrites a node's log as an earlier version left it: in LevelDB, in <data>/raft. */
async function asEarlierVersion(dataDirectory: string): Promise<void> {
  const segments = await SegmentLogStore.open(join(dataDirectory, "raft-log"));
  const state = await segments.load();
  const level = await LevelLogStore.open(join(dataDirectory, "raft"));
  const snapshot = state.snapshot;
  if (snapshot !== null) {
    const data = await snapshotData(segments, snapshot);
    if (data === null) throw new Error("no snapshot data");
    await level.installSnapshot({ meta: snapshot.meta, data });
  }
  const after = snapshot?.meta.index ?? 0;
  await level.append(
    state.entries.filter((entry) => entry.index > after),
    state.hardState,
  );
  await level.close();
  await segments.close();
  rmSync(join(dataDirectory, "raft-log"), { recursive: true });
}

it("a node whose log an earlier version kept in LevelDB moves it into segment files and serves it", async () => {
  if (spec === undefined) throw new Error("no node spec");
  const entry = writeConfigs(pki, root, [spec]).get(spec.id);
  if (entry === undefined) throw new Error("no config");
  const node = await cluster.start(spec, entry.config);
  const { share } = await cluster.initializeWithOneShare(spec.id);
  const secrets = cluster.client(spec.id).secrets;
  const put = await call(secrets.put.bind(secrets), {
    path: "app/moved",
    value: new TextEncoder().encode("s3cret"),
  });
  await node.stop(500);
  cluster.nodes.delete(spec.id);

  const dataDirectory = entry.config.dataDir;
  await asEarlierVersion(dataDirectory);
  expect(existsSync(join(dataDirectory, "raft"))).toBe(true);

  await cluster.start(spec, entry.config);
  expect(existsSync(join(dataDirectory, "raft"))).toBe(false);
  expect(existsSync(join(dataDirectory, "raft-log"))).toBe(true);
  const sys = cluster.client(spec.id).sys;
  await call(sys.unseal.bind(sys), { share, nonce: "", reset: false });
  await cluster.leaderId();
  const got = await call(secrets.get.bind(cluster.client(spec.id).secrets), {
    path: "app/moved",
    version: 0,
    consistency: Consistency.CONSISTENCY_UNSPECIFIED,
    maxStalenessMs: 0,
  });
  expect(new TextDecoder().decode(got.value)).toBe("s3cret");
  expect(got.version).toBe(put.version);
  // Served at or after the index the write committed at: the log's indexes came along.
  expect(got.revision).toBeGreaterThanOrEqual(put.revision);
});
