// One audit file sink: appends chained lines (audit-chain.ts) to numbered files in a directory
// (audit-000001.jsonl, ...). When an append resolves depends on the sink's durability:
//
// - "disk" (the default): once the entry is on disk, so it outlives a power loss. The file is
//   opened with O_DSYNC, so a write returns once its data is durable (as a write then an
//   fdatasync would): one job on libuv's thread pool per batch, not two, and never on the event
//   loop (a synchronous fsync per entry stalled every call and the node's Raft heartbeats under
//   load).
// - "os": once the operating system has the entry (a write(2) into the page cache, no wait for
//   the disk), so it outlives the process (a crash, SIGKILL) but not the machine; the file is
//   synced in the background every `syncIntervalMs` it was written, so a power loss loses at most
//   that much of the trail. Vault's file audit device does not sync at all. The write still goes
//   through the thread pool: on the event loop it was 12% faster at one client, but a disk so slow
//   that the kernel throttles writers would then stall the node's heartbeats too.
//
// One write is in flight at a time: every append that arrives meanwhile goes into the next write
// (group commit), and each write waits for the end of the event loop's turn, so that the calls
// whose input arrived in this turn share it. A file past `maxFileBytes` is closed with a
// checkpoint and the chain goes on in the next file; every start opens a new file linked to the
// last line of the previous one, so a file cut short by a crash stays as it was, and the verifier
// reports it.
//
// The key of checkpoint MACs comes from the root key, so a sealed node has none. When the node
// seals, a checkpoint under the key it is about to forget covers every line before the seal; when
// it unseals, a checkpoint under the new key covers the lines written while it was sealed (and,
// through the chain, those of an earlier run that stopped sealed). Only the lines since a node
// sealed stay without a MAC until it unseals again.

import {
  closeSync,
  constants,
  fdatasync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  write,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { type AuditRecord, auditFormatVersion, checkpointMac, genesisHash, hashLine } from "./audit-chain.js";

/** When an append resolves: its entry on disk, or handed to the operating system (see above). */
export type AuditDurability = "disk" | "os";

export const auditDurabilities: readonly AuditDurability[] = ["disk", "os"];

export interface AuditFileOptions {
  readonly directory: string;
  readonly durability: AuditDurability;
  /** With durability "os": how often a file written since its last sync is synced, in ms. */
  readonly syncIntervalMs: number;
  readonly node: string;
  /** The key of checkpoint MACs; null while it is not known (a sealed node): no checkpoints then. */
  readonly auditKey: Uint8Array | null;
  /** A file is rotated once it is larger than this. */
  readonly maxFileBytes: number;
  /** A checkpoint after every this many entries. */
  readonly checkpointEvery: number;
  readonly now?: () => Date;
  /** Told the number of entries of each write (how well appends share writes) and its time. */
  readonly onWrite?: (entries: number, seconds: number) => void;
  /** With durability "os": told each background sync's time, or its error. */
  readonly onSync?: (seconds: number, error: Error | null) => void;
}

const filePattern = /^audit-(\d{6})\.jsonl$/;

export function auditFileName(index: number): string {
  return `audit-${String(index).padStart(6, "0")}.jsonl`;
}

/** The audit files of a directory, oldest first. */
export function listAuditFiles(directory: string): string[] {
  return readdirSync(directory)
    .filter((name) => filePattern.test(name))
    .sort()
    .map((name) => join(directory, name));
}

export class AuditFile {
  /** The open file's descriptor; -1 while none is (a rotation that could not open the next). */
  private descriptor = -1;
  private fileIndex: number;
  private fileBytes = 0;
  private seq: number;
  private prev: string;
  private sinceCheckpoint = 0;
  /**
   * Whether a line was written since the last checkpoint (this file's header included, which
   * follows the last line of the previous file): what a checkpoint at a key change would cover.
   */
  private uncovered = true;
  /** Entries to write, and key changes in their place among them (a checkpoint marks each). */
  private pending: PendingItem[] = [];
  /** The write-and-sync loop while it runs (one at a time), or null. */
  private flushing: Promise<void> | null = null;
  /** Set once a write or sync failed: the file may hold a partial line, so it takes no more. */
  private broken: Error | null = null;
  /** close() or abandon(), once either was called (the file takes no more): both wait for it. */
  private ending: Promise<void> | null = null;
  /**
   * This file's copy of the audit key as of the lines written so far (zeroed when replaced or
   * closed); the buffer the trail last handed (a change is queued among the entries: see above).
   */
  private auditKey: Uint8Array | null;
  private auditKeyGiven: Uint8Array | null = null;
  /** With durability "os": the background sync's timer, whether one runs, and unsynced bytes. */
  private readonly syncTimer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> | null = null;
  private unsynced = false;

  private constructor(
    private readonly options: AuditFileOptions,
    state: { fileIndex: number; seq: number; prev: string },
  ) {
    this.auditKey = options.auditKey === null ? null : Uint8Array.from(options.auditKey);
    this.fileIndex = state.fileIndex;
    this.seq = state.seq;
    this.prev = state.prev;
    this.openFile();
    if (options.durability === "os") {
      this.syncTimer = setInterval(() => this.syncInBackground(), options.syncIntervalMs);
      // The timer alone does not keep the process running; close() syncs what is left.
      this.syncTimer.unref();
    }
  }

  /** Opens the sink, continuing the chain of the files already in the directory. */
  static open(options: AuditFileOptions): AuditFile {
    mkdirSync(options.directory, { recursive: true });
    const files = listAuditFiles(options.directory);
    const last = files.at(-1);
    let state = { fileIndex: 1, seq: 0, prev: genesisHash };
    if (last !== undefined) {
      const index = Number(filePattern.exec(last.slice(last.lastIndexOf("/") + 1))?.[1] ?? "0");
      state = { fileIndex: index + 1, seq: 0, prev: genesisHash };
      // The chain goes on from the last complete line; one cut short by a crash is left out (and
      // reported by the verifier).
      const line = lastChainedLine(last);
      if (line !== null) state = { fileIndex: index + 1, seq: line.seq, prev: hashLine(line.text) };
    }
    return new AuditFile(options, state);
  }

  /**
   * Sets (or, with null, forgets) the key of checkpoint MACs, for the entries appended from now
   * on. A change is written as a checkpoint: under the old key when the node seals, under the new
   * one when it unseals (see above).
   */
  setAuditKey(key: Uint8Array | null): void {
    // The trail hands the same buffer while the key stays the same: copy it only when it changes.
    if (key === this.auditKeyGiven) return;
    this.auditKeyGiven = key;
    if (this.ending !== null || this.broken !== null) {
      this.auditKey?.fill(0);
      this.auditKey = key === null ? null : Uint8Array.from(key);
      return;
    }
    this.pending.push({ kind: "key", key: key === null ? null : Uint8Array.from(key) });
    this.flushing ??= this.flushLoop();
  }

  /** Appends one entry; resolves once it is on disk ("disk") or written to the OS ("os"). */
  append(record: AuditRecord): Promise<void> {
    if (this.ending !== null) return Promise.reject(new Error("the audit file is closed"));
    if (this.broken !== null) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: "entry", record, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Waits for the entries in flight, then ends the file with a checkpoint and closes it. */
  close(): Promise<void> {
    this.ending ??= this.end(true);
    return this.ending;
  }

  /**
   * The node stops on a fatal error (its state or Raft log could not be written: a full disk,
   * say) and its process ends next: takes no more entries, waits for the write in flight, and
   * closes the file without a closing checkpoint, as a crash leaves it (the calls in flight end
   * unanswered, which the verifier reports as such). Without the wait, a write the full disk had
   * cut short (its first pages written, the rest refused) was left as a torn last line when the
   * process exited before its failure came back to be cut off (cutPartialLine).
   */
  abandon(): Promise<void> {
    this.ending ??= this.end(false);
    return this.ending;
  }

  private async end(closing: boolean): Promise<void> {
    if (this.syncTimer !== null) clearInterval(this.syncTimer);
    await this.flushing;
    await this.syncing;
    try {
      if (closing && this.broken === null) {
        const checkpoint = this.checkpointLine(true);
        try {
          if (checkpoint !== null) this.writeLines([checkpoint]);
          fsyncSync(this.descriptor);
        } catch (error) {
          this.cutPartialLine();
          throw error;
        }
      }
    } finally {
      if (this.descriptor >= 0) closeSync(this.descriptor);
      this.descriptor = -1;
      this.auditKey?.fill(0);
    }
  }

  /** Writes and syncs the pending entries, batch after batch, until none is left. */
  private async flushLoop(): Promise<void> {
    try {
      // Each batch is taken at the end of the event loop's turn, not at the next microtask: the
      // calls of one turn (many requests read from one socket, every call a finished write
      // released) reach their append through promise chains of different lengths, and a batch
      // taken at the first microtask held only the first few, the rest waiting a whole write for
      // the next one. Measured with Raft's Ready loop batched the same way: 8-9 entries per write
      // and 7-12% more writes per second at 64 clients (docs/performance.md).
      await endOfTurn();
      while (this.pending.length > 0) {
        const items = this.pending;
        this.pending = [];
        const batch = items.filter((item) => item.kind === "entry");
        if (this.broken !== null) {
          for (const { reject } of batch) reject(this.broken);
          for (const item of items) if (item.kind === "key") this.takeKey(item.key);
          continue;
        }
        try {
          const lines: string[] = [];
          for (const item of items) {
            if (item.kind === "key") {
              lines.push(...this.keyChangeLines(item.key));
              continue;
            }
            lines.push(this.line({ ...item.record }));
            this.sinceCheckpoint += 1;
            const checkpoint =
              this.sinceCheckpoint >= this.options.checkpointEvery ? this.checkpointLine() : null;
            if (checkpoint !== null) lines.push(checkpoint);
          }
          const text = Buffer.from(`${lines.join("\n")}\n`);
          const started = performance.now();
          // With "disk", durable when it returns: the file is O_DSYNC. With "os", in the page cache.
          await writeFully(this.descriptor, text);
          if (this.options.durability === "os") this.unsynced = true;
          this.fileBytes += text.length;
          if (batch.length > 0) this.options.onWrite?.(batch.length, (performance.now() - started) / 1000);
          for (const { resolve } of batch) resolve();
          if (this.fileBytes > this.options.maxFileBytes) this.rotate();
        } catch (error) {
          this.broken = error instanceof Error ? error : new Error(String(error));
          for (const { reject } of batch) reject(this.broken);
          this.cutPartialLine();
        }
        if (this.pending.length > 0) await endOfTurn();
      }
    } finally {
      this.flushing = null;
    }
  }

  /**
   * With durability "os": syncs the file if it was written since the last sync, on the thread
   * pool. A failed sync breaks the file as a failed write does (the kernel may have dropped the
   * unsynced pages, so the chain on disk may have a hole): the next append fails, and the trail
   * opens a new file.
   */
  private syncInBackground(): void {
    if (!this.unsynced || this.syncing !== null || this.broken !== null || this.ending !== null) return;
    this.unsynced = false;
    const descriptor = this.descriptor;
    const fileIndex = this.fileIndex;
    const started = performance.now();
    this.syncing = new Promise<void>((resolve) => {
      fdatasync(descriptor, (error) => {
        this.syncing = null;
        // A file rotated meanwhile was synced and closed by rotate(): its descriptor may be
        // gone (EBADF) or reused, and there is nothing left to sync.
        if (fileIndex !== this.fileIndex) {
          resolve();
          return;
        }
        if (error === null) {
          this.options.onSync?.((performance.now() - started) / 1000, null);
        } else {
          this.broken ??= error;
          this.options.onSync?.((performance.now() - started) / 1000, error);
        }
        resolve();
      });
    });
  }

  /**
   * After a failed write: the entries it held were never acknowledged, so what part of them reached
   * the file (a full disk takes the first pages of a write) is cut off, and the file ends with its
   * last whole line, as the next file's chain does. Left in place, it read as a crash's torn line
   * to the verifier. A cut that fails too leaves the line for the verifier to report.
   */
  private cutPartialLine(): void {
    if (this.descriptor < 0) return;
    try {
      ftruncateSync(this.descriptor, this.fileBytes);
    } catch {
      // Reported by the verifier as an incomplete last line.
    }
  }

  private rotate(): void {
    const checkpoint = this.checkpointLine();
    if (checkpoint !== null) this.writeLines([checkpoint]);
    fsyncSync(this.descriptor);
    this.unsynced = false;
    closeSync(this.descriptor);
    this.descriptor = -1;
    this.fileIndex += 1;
    this.fileBytes = 0;
    this.openFile();
  }

  /**
   * Opens the file of `fileIndex` with its header line, synced. A file that cannot take its header
   * (a full disk) is closed and removed before the error goes up: the sink is opened again at the
   * next entry, and each attempt used to leave an empty file and an open descriptor behind (218 of
   * each within seconds on a full disk).
   */
  private openFile(): void {
    const file = auditFileName(this.fileIndex);
    const path = join(this.options.directory, file);
    const descriptor = openSync(
      path,
      constants.O_WRONLY |
        constants.O_CREAT |
        constants.O_EXCL |
        (this.options.durability === "disk" ? constants.O_DSYNC : 0),
      0o600,
    );
    try {
      const header = Buffer.from(`${this.line({ type: "header", file })}\n`);
      writeFullySync(descriptor, header);
      fsyncSync(descriptor);
      this.fileBytes += header.length;
    } catch (error) {
      closeSync(descriptor);
      rmSync(path, { force: true });
      throw error;
    }
    this.descriptor = descriptor;
  }

  /**
   * The checkpoint that marks a key change, and the change: under the old key before it is
   * forgotten (a seal), or under the new one once it is taken (an unseal). Nothing when no
   * line came since the last checkpoint.
   */
  private keyChangeLines(key: Uint8Array | null): string[] {
    const lines: string[] = [];
    const before = this.uncovered ? this.checkpointLine() : null;
    if (before !== null) lines.push(before);
    this.takeKey(key);
    const after = this.uncovered ? this.checkpointLine() : null;
    if (after !== null) lines.push(after);
    return lines;
  }

  private takeKey(key: Uint8Array | null): void {
    this.auditKey?.fill(0);
    this.auditKey = key;
  }

  /**
   * A checkpoint (the closing one with `closing`), or null while the key is unknown (the chain
   * goes on; MACs resume with the key).
   */
  private checkpointLine(closing = false): string | null {
    if (this.auditKey === null) return null;
    this.sinceCheckpoint = 0;
    const mac = checkpointMac(this.auditKey, this.seq + 1, this.prev, closing);
    const line = this.line(closing ? { type: "checkpoint", closed: true, mac } : { type: "checkpoint", mac });
    this.uncovered = false;
    return line;
  }

  /** One chained line: the next sequence number, the time, the node, the previous line's hash. */
  private line(fields: Record<string, unknown>): string {
    this.seq += 1;
    const line = JSON.stringify({
      v: auditFormatVersion,
      seq: this.seq,
      time: (this.options.now?.() ?? new Date()).toISOString(),
      node: this.options.node,
      prev: this.prev,
      ...fields,
    });
    this.prev = hashLine(line);
    this.uncovered = true;
    return line;
  }

  private writeLines(lines: readonly string[]): void {
    const text = Buffer.from(`${lines.join("\n")}\n`);
    writeFullySync(this.descriptor, text);
    this.fileBytes += text.length;
  }
}

type PendingItem =
  | {
      readonly kind: "entry";
      readonly record: AuditRecord;
      readonly resolve: () => void;
      readonly reject: (error: Error) => void;
    }
  /** The key of checkpoint MACs from here on (a copy, owned by the file): null once sealed. */
  | { readonly kind: "key"; readonly key: Uint8Array | null };

const writeAsync = promisify(write);

/** Resolves in the event loop's check phase: after every I/O callback of this turn has run. */
function endOfTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Writes all of `bytes` at the end of the file (a write may take fewer bytes than asked). */
async function writeFully(descriptor: number, bytes: Buffer): Promise<void> {
  for (let offset = 0; offset < bytes.length; ) {
    const { bytesWritten } = await writeAsync(descriptor, bytes, offset, bytes.length - offset, null);
    offset += bytesWritten;
  }
}

/** writeFully on the event loop. */
function writeFullySync(descriptor: number, bytes: Buffer): void {
  for (let offset = 0; offset < bytes.length; )
    offset += writeSync(descriptor, bytes, offset, bytes.length - offset, null);
}

/** How much of an audit file's end is read first to find its last line (then four times more). */
const lastLineWindowBytes = 64 * 1024;

/**
 * The last line of an audit file that parses with a sequence number, read from the file's end a
 * window at a time: a file runs to audit.maxFileBytes (64 MiB by default), read whole at every
 * start before.
 */
function lastChainedLine(path: string): { text: string; seq: number } | null {
  const descriptor = openSync(path, "r");
  try {
    const size = fstatSync(descriptor).size;
    for (let window = lastLineWindowBytes; ; window *= 4) {
      const start = Math.max(0, size - window);
      const bytes = Buffer.allocUnsafe(size - start);
      for (let read = 0; read < bytes.length; ) {
        const got = readSync(descriptor, bytes, read, bytes.length - read, start + read);
        if (got === 0) throw new Error(`the audit file ${path} shrank while it was read`);
        read += got;
      }
      const lines = bytes.toString("utf8").split("\n");
      // The window's first line may begin before it: whole only when the window is the file.
      for (let i = lines.length - 1; i >= (start === 0 ? 0 : 1); i--) {
        const text = lines[i] ?? "";
        const seq = seqOf(text);
        if (seq !== null) return { text, seq };
      }
      if (start === 0) return null;
    }
  } finally {
    closeSync(descriptor);
  }
}

function seqOf(line: string): number | null {
  try {
    const parsed = JSON.parse(line) as { seq?: unknown };
    return typeof parsed.seq === "number" ? parsed.seq : null;
  } catch {
    return null;
  }
}
