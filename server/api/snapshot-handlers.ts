// Cluster.SaveSnapshot and Cluster.RestoreSnapshot: backups. A snapshot is the state machine's
// own checksummed format taken after a linearizable read barrier, so it holds everything
// acknowledged before the call - and only ciphertext: values under the barrier, the keyring under
// the root key, the seal record. Restoring proposes its records in batches into a new,
// uninitialized cluster, the seal record last (until it applies, the cluster stays uninitialized,
// so an interrupted restore can simply be run again). Member addresses are not restored: the new
// cluster's own are kept.

import { createHash } from "node:crypto";
import type {
  RestoreSnapshotResponse,
  SaveSnapshotRequest,
  SnapshotChunk,
} from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import type { RaftNode } from "../../raft/node/index.js";
import {
  type ApplyResult,
  encodeCommand,
  readSnapshot,
  type SecretStateMachine,
  type SnapshotRecord,
  StateError,
  systemAreaOfKey,
  wellKnownRecords,
} from "../../storage/state/index.js";
import type { ClientStreamHandler, ServerStreamHandler } from "../client-listener.js";
import { NodeError, toServiceError } from "../errors.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { SealKeeper } from "../seal-keeper.js";

const chunkBytes = 1024 * 1024;
/** Records per proposal stay well under the Raft entry limit. */
const loadBatchBytes = 512 * 1024;

export interface SnapshotParts {
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly state: SecretStateMachine;
  readonly keeper: SealKeeper;
  /** The largest snapshot a restore accepts (it is held in memory while it is checked). */
  readonly snapshotBytesMax: number;
  readonly reads: ReadBarrier;
  /** How long the read barrier before a save may wait (for a leader, say). */
  readonly timeoutMs: number;
}

export function saveSnapshotHandler(
  parts: SnapshotParts,
): ServerStreamHandler<SaveSnapshotRequest, SnapshotChunk> {
  return (call, context) => {
    const run = async () => {
      await parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, {
        ...context,
        deadline: Date.now() + parts.timeoutMs,
      });
      const data = await parts.state.snapshot();
      const digest = createHash("sha256").update(data).digest();
      for (let offset = 0; offset < data.length || offset === 0; offset += chunkBytes) {
        const last = offset + chunkBytes >= data.length;
        const chunk: SnapshotChunk = {
          data: data.subarray(offset, offset + chunkBytes),
          totalBytes: offset === 0 ? data.length : 0,
          appliedIndex: offset === 0 ? parts.state.appliedIndex() : 0,
          sha256: last ? digest : new Uint8Array(0),
        };
        if (!call.write(chunk)) await new Promise((resolve) => call.once("drain", resolve));
        if (last) break;
      }
      call.end();
    };
    run().catch((error: unknown) => call.emit("error", toServiceError(error)));
  };
}

export function restoreSnapshotHandler(
  parts: SnapshotParts,
): ClientStreamHandler<SnapshotChunk, RestoreSnapshotResponse> {
  return (call, callback) => {
    const chunks: Uint8Array[] = [];
    let received = 0;
    let digest: Uint8Array | null = null;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      callback(toServiceError(error));
    };
    try {
      const status = parts.raft().status();
      if (status.role !== "leader") {
        throw new NodeError("NO_LEADER", "send the snapshot to the leader", { leaderHint: status.leader });
      }
    } catch (error) {
      fail(error);
      return;
    }
    call.on("data", (chunk: SnapshotChunk) => {
      if (failed) return;
      received += chunk.data.length;
      if (received > parts.snapshotBytesMax) {
        fail(
          new NodeError("RESOURCE_EXHAUSTED", `the snapshot is larger than ${parts.snapshotBytesMax} bytes`),
        );
        return;
      }
      chunks.push(Uint8Array.from(chunk.data));
      if (chunk.sha256.length > 0) digest = chunk.sha256;
    });
    call.on("end", () => {
      if (failed) return;
      restore(parts, chunks, digest).then((response) => callback(null, response), fail);
    });
    call.on("error", fail);
  };
}

async function restore(
  parts: SnapshotParts,
  chunks: readonly Uint8Array[],
  digest: Uint8Array | null,
): Promise<RestoreSnapshotResponse> {
  const data = Buffer.concat(chunks);
  if (digest === null || !createHash("sha256").update(data).digest().equals(Buffer.from(digest))) {
    throw new NodeError(
      "INVALID_ARGUMENT",
      "the snapshot is incomplete or damaged: its SHA-256 does not match",
    );
  }
  const raft = parts.raft();
  await raft.readIndex();
  if (parts.keeper.initialized()) {
    throw new NodeError(
      "ALREADY_INITIALIZED",
      "a snapshot is restored into a new cluster only (this one is initialized)",
    );
  }
  const { records } = await readSnapshot([data]);
  const sealKey = (record: SnapshotRecord) => systemAreaOfKey(record.key) === wellKnownRecords.seal.area;
  const restorable = records.filter((record) => systemAreaOfKey(record.key) !== "member");
  const ordered = [...restorable.filter((record) => !sealKey(record)), ...restorable.filter(sealKey)];
  let revision = 0;
  let batch: SnapshotRecord[] = [];
  let batchBytes = 0;
  const propose = async () => {
    if (batch.length === 0) return;
    const { index, result } = await raft.propose(
      encodeCommand({ op: "state.load", path: "", records: batch, at: Date.now() }),
    );
    if (result !== null && !result.ok) throw new StateError(result.code, result.message);
    revision = index;
    batch = [];
    batchBytes = 0;
  };
  for (const record of ordered) {
    // The seal record goes alone and last: the cluster counts as initialized once it applies.
    if (sealKey(record)) await propose();
    batch.push(record);
    batchBytes += record.key.length + record.value.length;
    if (batchBytes >= loadBatchBytes || sealKey(record)) await propose();
  }
  await propose();
  await parts.keeper.reload();
  return { records: ordered.length, revision };
}
