// Cluster.SaveSnapshot and Cluster.RestoreSnapshot: backups. A snapshot is the state machine's
// own checksummed format taken after a linearizable read barrier, so it holds everything
// acknowledged before the call - and only ciphertext: values under the barrier, the keyring under
// the root key, the seal record. A save streams it from a LevelDB snapshot without holding it
// whole (read twice: once for its size and digest, once to send). A restore writes what it
// receives (up to requests.snapshotBytesMax) to a file until the digest in the last chunk is
// checked, then proposes its records in batches into a new, uninitialized cluster, the keyring
// first and the seal record last (until it applies, the cluster stays uninitialized, so an
// interrupted restore can simply be run again). Member addresses and the features recorded as
// every member's are not restored: the new cluster's own are kept.
//
// Revisions are Raft indexes (plus an offset), and the new cluster's log starts again from 1. So
// the restore gives the new cluster a revision offset that puts its revisions above the saved
// cluster's: its revision at the save plus `revisionsAfterSave`, the changes the saved cluster may
// have made after it, as etcd's restore bumps revisions. A watcher resuming from a revision of
// the saved cluster is then told its history is gone (list, then watch from now) instead of
// having the new cluster's changes up to that number skipped, and no revision ever goes back.
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";
import { join } from "node:path";
import type {
  RestoreSnapshotResponse,
  SaveSnapshotRequest,
  SnapshotChunk,
} from "../../proto/gen/strongroom/v1/cluster.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { concatBytes } from "../../raft/core/index.js";
import type { RaftNode } from "../../raft/node/index.js";
import {
  type ApplyResult,
  checkSnapshot,
  decodeSnapshot,
  encodeCommand,
  isSystemRecordKey,
  requestRecordKind,
  revisionOffsetOf,
  revisionOffsetRecord,
  type SecretStateMachine,
  type SnapshotRecord,
  StateError,
  systemAreaOfKey,
  systemRecordName,
  wellKnownRecords,
} from "../../storage/state/index.js";
import type { ClientStreamHandler, ServerStreamHandler } from "../client-listener.js";
import type { ClusterSetupLock } from "../cluster-setup-lock.js";
import { NodeError, toServiceError } from "../errors.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { SealKeeper } from "../seal-keeper.js";

const chunkBytes = 1024 * 1024;
/** Records per proposal stay well under the Raft entry limit. */
const loadBatchBytes = 512 * 1024;
/** How far above a saved cluster's revision at the save a cluster restored from it starts. */
export const revisionsAfterSave = 1_000_000_000;

export interface SnapshotParts {
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly state: SecretStateMachine;
  readonly keeper: SealKeeper;
  /** The largest snapshot a restore accepts. */
  readonly snapshotBytesMax: number;
  /** Where a restore keeps what it receives until its digest is checked (emptied at start). */
  readonly stagingDirectory: string;
  readonly reads: ReadBarrier;
  /** How long the read barrier before a save may wait (for a leader, say). */
  readonly timeoutMs: number;
  /** Whether this leader may propose `sys.putAll` (every member understands it). */
  readonly systemPutAllUsable: () => boolean;
  /** Shared with init: one of them at a time on this node. */
  readonly setupLock: ClusterSetupLock;
}

/** What a restore uses of the node. */
export type RestoreParts = Pick<
  SnapshotParts,
  "raft" | "state" | "keeper" | "systemPutAllUsable" | "setupLock"
>;

export function saveSnapshotHandler(
  parts: SnapshotParts,
): ServerStreamHandler<SaveSnapshotRequest, SnapshotChunk> {
  return (call, context) => {
    const run = async () => {
      await parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, {
        ...context,
        answerBy: performance.now() + parts.timeoutMs,
      });
      // Never whole in memory: the capture is read through once for the size (in the first
      // chunk) and the digest (in the last), then again to send it, a chunk at a time.
      const held = await parts.state.holdSnapshot();
      try {
        let totalBytes = 0;
        const measured = createHash("sha256");
        for await (const part of held.read()) {
          totalBytes += part.length;
          measured.update(part);
        }
        const digest = measured.digest();
        // The second read gives the same bytes (one LevelDB snapshot, encoded the same way); the
        // digest is checked where they arrive (the CLI's save, a restore).
        let sentBytes = 0;
        for await (const data of regroup(held.read(), chunkBytes)) {
          if (call.cancelled) return;
          const first = sentBytes === 0;
          sentBytes += data.length;
          await writeTaken(call, {
            data,
            totalBytes: first ? totalBytes : 0,
            appliedIndex: first ? held.appliedIndex : 0,
            sha256: sentBytes === totalBytes ? digest : new Uint8Array(0),
          });
        }
        if (sentBytes !== totalBytes)
          throw new NodeError(
            "INTERNAL",
            `the snapshot read ${sentBytes} bytes to send where it had measured ${totalBytes}; save it again`,
          );
      } finally {
        await held.release();
      }
      if (!call.cancelled) call.end();
    };
    run().catch((error: unknown) => {
      if (!call.cancelled) call.emit("error", toServiceError(error));
    });
  };
}

/**
 * Writes one chunk and waits until the stream has taken it (its write callback: handed to HTTP/2,
 * within the client's flow-control window), or the call is cancelled. Waiting only for "drain"
 * would let grpc-js queue 16 chunks first (an object stream's high-water mark): 16 MiB.
 */
async function writeTaken(
  call: Parameters<ServerStreamHandler<SaveSnapshotRequest, SnapshotChunk>>[0],
  chunk: SnapshotChunk,
): Promise<void> {
  if (call.cancelled) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      call.off("cancelled", done);
      resolve();
    };
    call.on("cancelled", done);
    call.write(chunk, done);
  });
}

/** The parts joined into pieces of at least `bytes` (the last may be shorter). */
async function* regroup(parts: AsyncIterable<Uint8Array>, bytes: number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const part of parts) {
    pending.push(part);
    pendingBytes += part.length;
    if (pendingBytes >= bytes) {
      yield concatBytes(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield concatBytes(pending, pendingBytes);
}

export function restoreSnapshotHandler(
  parts: SnapshotParts,
): ClientStreamHandler<SnapshotChunk, RestoreSnapshotResponse> {
  return (call, callback) => {
    let staged: StagedRestore | null = null;
    // Answered once, success or failure; the staged file goes either way.
    let answered = false;
    const fail = (error: unknown) => {
      if (answered) return;
      answered = true;
      callback(toServiceError(error));
      void staged?.discard();
    };
    try {
      const status = parts.raft().status();
      if (status.role !== "leader") {
        throw new NodeError("NO_LEADER", "send the snapshot to the leader", { leaderHint: status.leader });
      }
      staged = StagedRestore.create(parts.stagingDirectory);
    } catch (error) {
      fail(error);
      return;
    }
    const file = staged;
    let writing: Promise<void> = Promise.resolve();
    // One chunk at a time into the file: the stream is paused while a chunk is written, so a fast
    // client waits (HTTP/2 flow control) instead of piling chunks up here.
    call.on("data", (chunk: SnapshotChunk) => {
      if (answered) return;
      if (file.bytes + chunk.data.length > parts.snapshotBytesMax) {
        fail(
          new NodeError("RESOURCE_EXHAUSTED", `the snapshot is larger than ${parts.snapshotBytesMax} bytes`),
        );
        return;
      }
      call.pause();
      writing = file.append(chunk).then(() => {
        call.resume();
      });
      writing.catch(fail);
    });
    call.on("end", () => {
      if (answered) return;
      // "end" may come while the last chunk is still being written.
      writing
        .then(() => {
          if (!file.matches()) {
            throw new NodeError(
              "INVALID_ARGUMENT",
              "the snapshot is incomplete or damaged: its SHA-256 does not match",
            );
          }
          return restoreSnapshot(parts, () => file.read());
        })
        .then((response) => {
          if (answered) return;
          answered = true;
          callback(null, response);
          void file.discard();
        }, fail);
    });
    call.on("error", fail);
    call.on("cancelled", () => fail(new NodeError("DEADLINE_EXCEEDED", "the client cancelled the restore")));
  };
}

/**
 * A snapshot being received for a restore: written to a file of its own in the staging directory
 * (ciphertext only, as the backup file is) and hashed as it comes, read back from the start as
 * often as the restore needs, and removed once it is done or failed.
 */
class StagedRestore {
  bytes = 0;
  digest: Uint8Array | null = null;
  private readonly hash = createHash("sha256");
  private handle: Promise<FileHandle> | null;
  private discarded = false;

  private constructor(readonly path: string) {
    this.handle = open(path, "wx+", 0o600);
  }

  static create(directory: string): StagedRestore {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    return new StagedRestore(join(directory, `restore-${randomUUID()}.snapshot`));
  }

  async append(chunk: SnapshotChunk): Promise<void> {
    const handle = await this.opened();
    await handle.write(chunk.data);
    this.hash.update(chunk.data);
    this.bytes += chunk.data.length;
    if (chunk.sha256.length > 0) this.digest = Uint8Array.from(chunk.sha256);
  }

  /** Whether the digest of the last chunk is that of the bytes received. */
  matches(): boolean {
    return this.digest !== null && this.hash.digest().equals(Buffer.from(this.digest));
  }

  /** The bytes from the start, 1 MiB at a time. */
  async *read(): AsyncGenerator<Uint8Array> {
    const handle = await this.opened();
    for (let position = 0; position < this.bytes; ) {
      const buffer = Buffer.alloc(Math.min(chunkBytes, this.bytes - position));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) throw new Error(`the staged snapshot ${this.path} is shorter than received`);
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  }

  async discard(): Promise<void> {
    if (this.discarded) return;
    this.discarded = true;
    const handle = this.handle;
    this.handle = null;
    await handle?.then((opened) => opened.close()).catch(() => {});
    await rm(this.path, { force: true });
  }

  private opened(): Promise<FileHandle> {
    if (this.handle === null) throw new Error("the staged snapshot was discarded");
    return this.handle;
  }
}

/**
 * Restores a snapshot (whose digest was checked) into this new cluster; `read` gives its bytes
 * from the start each time it is called. The keyring goes first, in an entry applied only while no
 * seal record exists, and the seal record last: an init that commits before the keyring leaves the
 * restore writing nothing, and one that comes after it is refused (sys-api.ts), so neither's
 * keyring can replace the other's under a seal record that does not unwrap it.
 */
export function restoreSnapshot(
  parts: RestoreParts,
  read: () => AsyncIterable<Uint8Array>,
): Promise<RestoreSnapshotResponse> {
  return parts.setupLock.run("a snapshot restore", () => restoreAlone(parts, read));
}

async function restoreAlone(
  parts: RestoreParts,
  read: () => AsyncIterable<Uint8Array>,
): Promise<RestoreSnapshotResponse> {
  const raft = parts.raft();
  await raft.readIndex();
  if (parts.keeper.initialized()) {
    throw new NodeError(
      "ALREADY_INITIALIZED",
      "a snapshot is restored into a new cluster only (this one is initialized)",
    );
  }
  const isKeyring = (record: SnapshotRecord) => isSystemRecordKey(record.key, wellKnownRecords.keyring);
  const isSeal = (record: SnapshotRecord) => systemAreaOfKey(record.key) === wellKnownRecords.seal.area;
  // Every chunk checked before anything is proposed, the keyring and the seal record kept; then
  // read again, a chunk at a time, so the records are never all decoded at once.
  const { kept } = await checkSnapshot(read(), (record) => isKeyring(record) || isSeal(record));
  const keyring = kept.find(isKeyring);
  const sealRecords = kept.filter(isSeal);
  if (keyring === undefined || sealRecords.length === 0) {
    throw new NodeError(
      "INVALID_ARGUMENT",
      "the snapshot has no keyring or no seal record: it was not saved from an initialized cluster",
    );
  }
  let revision = 0;
  // Until every member understands sys.putAll (a rolling upgrade), the keyring goes with the rest.
  const keyringFirst = parts.systemPutAllUsable();
  if (keyringFirst) revision = await proposeKeyring(parts, keyring);
  const { appliedIndex: savedIndex, chunks: decoded } = await decodeSnapshot(read());
  // The saved cluster's own offset, when it was itself restored from a backup.
  let savedOffset = 0;
  let records = keyringFirst ? 1 : 0;
  let batch: SnapshotRecord[] = [];
  let batchBytes = 0;
  const propose = async () => {
    if (batch.length === 0) return;
    const { index, result } = await raft.propose(
      encodeCommand({ op: "state.load", path: "", records: batch, at: Date.now() }),
    );
    if (result !== null && !result.ok) throw new StateError(result.code, result.message);
    revision = parts.state.revisionOf(index);
    batch = [];
    batchBytes = 0;
  };
  for await (const chunk of decoded) {
    for (const record of chunk) {
      // Member addresses are the new cluster's own, and so are its own records (the features
      // its members understand, which it records itself; the marker of this restore) and the
      // request ids it has applied (the saved cluster's clients retry against the saved cluster,
      // not a restore of it).
      const area = systemAreaOfKey(record.key);
      if (area === "member" || area === "cluster" || record.key[0] === requestRecordKind) continue;
      const offset = revisionOffsetOf(record);
      if (offset !== null) {
        savedOffset = offset;
        continue;
      }
      if (keyringFirst && isKeyring(record)) continue;
      records += 1;
      // The seal record goes alone and last: the cluster counts as initialized once it applies.
      if (isSeal(record)) continue;
      batch.push(record);
      batchBytes += record.key.length + record.value.length;
      if (batchBytes >= loadBatchBytes) await propose();
    }
  }
  // Before the seal record: no call is served (the cluster is not initialized) until the offset
  // applies, so every revision a client sees is above the saved cluster's.
  batch.push(revisionOffsetRecord(savedOffset + savedIndex + revisionsAfterSave));
  await propose();
  for (const record of sealRecords) {
    batch.push(record);
    await propose();
  }
  if (keyringFirst) await removeRestoringMarker(parts);
  await parts.keeper.reload();
  return { records, revision };
}

/**
 * The restore's first entry: its keyring and the marker that refuses an init until the restore is
 * done, applied only while the cluster has no seal record.
 */
async function proposeKeyring(parts: RestoreParts, keyring: SnapshotRecord): Promise<number> {
  const at = Date.now();
  const marker = new TextEncoder().encode(JSON.stringify({ startedAt: at }));
  const { index, result } = await parts.raft().propose(
    encodeCommand({
      op: "sys.putAll",
      path: "",
      records: [
        { ...systemRecordName(wellKnownRecords.keyring), value: keyring.value },
        { ...systemRecordName(wellKnownRecords.restoring), value: marker },
      ],
      ifAbsent: [systemRecordName(wellKnownRecords.seal)],
      at,
    }),
  );
  if (result !== null && !result.ok) {
    if (result.code === "CAS_MISMATCH") {
      throw new NodeError(
        "ALREADY_INITIALIZED",
        "an init committed first: the cluster is initialized and nothing was restored",
      );
    }
    throw new StateError(result.code, result.message);
  }
  return parts.state.revisionOf(index);
}

/**
 * Removes the marker once the seal record is applied. Not removed (the leadership moved just
 * then), it is left in a cluster that counts as initialized, where init is refused anyway.
 */
async function removeRestoringMarker(parts: RestoreParts): Promise<void> {
  const { restoring } = wellKnownRecords;
  try {
    await parts
      .raft()
      .propose(
        encodeCommand({ op: "sys.delete", area: restoring.area, path: restoring.name, at: Date.now() }),
      );
  } catch {
    // The restore is done: its seal record applied before this was proposed.
  }
}
