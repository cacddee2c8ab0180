// The SDK's saveSnapshot against stand-in nodes (real gRPC servers over mutual TLS that serve
// chosen streams): a node that fails before its first chunk is passed over for the next one; a node
// that fails after it fails the save, since the next node's chunks would follow the first node's as
// if they were one snapshot.

import { type ServerWritableStream, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, expect, it } from "vitest";
import { createClient } from "../../client/index.js";
import {
  ClusterService,
  type SaveSnapshotRequest,
  type SnapshotChunk,
} from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { TestPki } from "../server/pki-fixture.js";
import { StandInNodes } from "./stand-in-node.js";

const pki = new TestPki("sdk-snapshot");
const standIns = new StandInNodes(pki);
afterAll(() => {
  standIns.stopAll();
  pki.cleanup();
});

type SaveStream = ServerWritableStream<SaveSnapshotRequest, SnapshotChunk>;

const chunk = (data: number[], extra: Partial<SnapshotChunk> = {}): SnapshotChunk => ({
  data: Uint8Array.from(data),
  totalBytes: 0,
  appliedIndex: 0,
  sha256: new Uint8Array(0),
  ...extra,
});

const unavailable = (details: string) =>
  Object.assign(new Error(details), { code: status.UNAVAILABLE, details }) as Partial<ServiceError>;

/** A stand-in node on 127.0.0.1 whose SaveSnapshot is `save`; answers its address. */
function standIn(save: (call: SaveStream) => void): Promise<string> {
  return standIns.start(ClusterService, { saveSnapshot: save });
}

/** A node that serves a whole two-chunk snapshot. */
const whole = (call: SaveStream) => {
  call.write(chunk([1, 2, 3], { totalBytes: 6, appliedIndex: 7 }));
  call.write(chunk([4, 5, 6], { sha256: new Uint8Array(32).fill(9) }));
  call.end();
};

function sdk(endpoints: string[]) {
  const files = pki.client("saver");
  return createClient({
    endpoints,
    // The tests stage which stand-in is tried first.
    endpointOrder: "given",
    tls: { caFile: files.caFile, certFile: files.certificateFile, keyFile: files.privateKeyFile },
    deadlineMs: 5000,
  });
}

it("passes over a node that fails before its first chunk", async () => {
  const failing = await standIn((call) => call.emit("error", unavailable("going away")));
  const client = sdk([failing, await standIn(whole)]);
  const received: number[][] = [];
  await client.saveSnapshot((got) => {
    received.push([...got.data]);
  });
  client.close();
  expect(received).toEqual([
    [1, 2, 3],
    [4, 5, 6],
  ]);
});

it("fails the save when its node fails after the first chunk, without another node's chunks", async () => {
  const cut = await standIn((call) => {
    call.write(chunk([1, 2, 3], { totalBytes: 6, appliedIndex: 7 }), () =>
      call.emit("error", unavailable("going away")),
    );
  });
  const client = sdk([cut, await standIn(whole)]);
  const received: number[][] = [];
  const saved = client.saveSnapshot((got) => {
    received.push([...got.data]);
  });
  await expect(saved).rejects.toMatchObject({ code: status.UNAVAILABLE });
  client.close();
  expect(received).toEqual([[1, 2, 3]]);
});
