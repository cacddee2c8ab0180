// One audit file sink: appends chained lines (audit-chain.ts) to numbered files in a directory
// (audit-000001.jsonl, ...), syncing before an append resolves, so "the entry is durable" is true
// when a request proceeds. The file is opened with O_DSYNC, so a write returns once its data is
// durable (as a write then an fdatasync would): one job on libuv's thread pool per batch, not two,
// and never on the event loop (a synchronous fsync per entry stalled every call and the node's Raft
// heartbeats under load). One write is in flight at a time: every append that arrives meanwhile
// goes into the next write (group commit), and each write waits for the end of the event loop's
// turn, so that the calls whose input arrived in this turn share it. A file past `maxFileBytes` is
// closed with a checkpoint and the chain goes on in the next file; every start opens a new file
// linked to the last line of the previous one, so a file cut short by a crash stays as it was, and
// the verifier reports it.

import {
  closeSync,
  constants,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  write,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { type AuditRecord, auditFormatVersion, checkpointMac, genesisHash, hashLine } from "./audit-chain.js";

export interface AuditFileOptions {
  readonly directory: string;
  readonly node: string;
  /** The key of checkpoint MACs; null while it is not known (a sealed node): no checkpoints then. */
  readonly auditKey: Uint8Array | null;
  /** A file is rotated once it is larger than this. */
  readonly maxFileBytes: number;
  /** A checkpoint after every this many entries. */
  readonly checkpointEvery: number;
  readonly now?: () => Date;
  /** Told the number of entries of each durable write (how well appends share writes). */
  readonly onWrite?: (entries: number, seconds: number) => void;
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
  private descriptor: number;
  private fileIndex: number;
  private fileBytes = 0;
  private seq: number;
  private prev: string;
  private sinceCheckpoint = 0;
  private pending: { record: AuditRecord; resolve: () => void; reject: (error: Error) => void }[] = [];
  /** The write-and-sync loop while it runs (one at a time), or null. */
  private flushing: Promise<void> | null = null;
  /** Set once a write or sync failed: the file may hold a partial line, so it takes no more. */
  private broken: Error | null = null;
  private closed = false;
  /** This file's copy of the audit key (zeroed when replaced or closed), and the buffer it copies. */
  private auditKey: Uint8Array | null;
  private auditKeyGiven: Uint8Array | null = null;

  private constructor(
    private readonly options: AuditFileOptions,
    state: { fileIndex: number; seq: number; prev: string },
  ) {
    this.auditKey = options.auditKey === null ? null : Uint8Array.from(options.auditKey);
    this.fileIndex = state.fileIndex;
    this.seq = state.seq;
    this.prev = state.prev;
    this.descriptor = this.openFile();
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
      const lines = readFileSync(last, "utf8").split("\n");
      for (let i = lines.length - 1; i >= 0; i--) {
        const line = lines[i] ?? "";
        const seq = seqOf(line);
        if (seq !== null) {
          state = { fileIndex: index + 1, seq, prev: hashLine(line) };
          break;
        }
      }
    }
    return new AuditFile(options, state);
  }

  /** Sets (or, with null, forgets) the key of checkpoint MACs. */
  setAuditKey(key: Uint8Array | null): void {
    // The trail hands the same buffer while the key stays the same: copy it only when it changes.
    if (key === this.auditKeyGiven) return;
    this.auditKeyGiven = key;
    this.auditKey?.fill(0);
    this.auditKey = key === null ? null : Uint8Array.from(key);
  }

  /** Appends one entry; resolves once it is on disk (written and synced). */
  append(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit file is closed"));
    if (this.broken !== null) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.pending.push({ record, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Waits for the entries in flight, then ends the file with a checkpoint and closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    try {
      if (this.broken === null) {
        const checkpoint = this.checkpointLine();
        if (checkpoint !== null) this.writeLines([checkpoint]);
        fsyncSync(this.descriptor);
      }
    } finally {
      closeSync(this.descriptor);
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
        const batch = this.pending;
        this.pending = [];
        if (this.broken !== null) {
          for (const { reject } of batch) reject(this.broken);
          continue;
        }
        try {
          const lines: string[] = [];
          for (const { record } of batch) {
            lines.push(this.line({ ...record }));
            this.sinceCheckpoint += 1;
            const checkpoint =
              this.sinceCheckpoint >= this.options.checkpointEvery ? this.checkpointLine() : null;
            if (checkpoint !== null) lines.push(checkpoint);
          }
          const text = Buffer.from(`${lines.join("\n")}\n`);
          // Durable when it returns: the file is O_DSYNC.
          const started = performance.now();
          await writeFully(this.descriptor, text);
          this.fileBytes += text.length;
          this.options.onWrite?.(batch.length, (performance.now() - started) / 1000);
          for (const { resolve } of batch) resolve();
          if (this.fileBytes > this.options.maxFileBytes) this.rotate();
        } catch (error) {
          this.broken = error instanceof Error ? error : new Error(String(error));
          for (const { reject } of batch) reject(this.broken);
        }
        if (this.pending.length > 0) await endOfTurn();
      }
    } finally {
      this.flushing = null;
    }
  }

  private rotate(): void {
    const checkpoint = this.checkpointLine();
    if (checkpoint !== null) this.writeLines([checkpoint]);
    fsyncSync(this.descriptor);
    closeSync(this.descriptor);
    this.fileIndex += 1;
    this.fileBytes = 0;
    this.descriptor = this.openFile();
  }

  private openFile(): number {
    const descriptor = openSync(
      join(this.options.directory, auditFileName(this.fileIndex)),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC,
      0o600,
    );
    this.descriptor = descriptor;
    this.writeLines([this.line({ type: "header", file: auditFileName(this.fileIndex) })]);
    fsyncSync(descriptor);
    return descriptor;
  }

  /** A checkpoint, or null while the key is unknown (the chain goes on; MACs resume with the key). */
  private checkpointLine(): string | null {
    if (this.auditKey === null) return null;
    this.sinceCheckpoint = 0;
    return this.line({ type: "checkpoint", mac: checkpointMac(this.auditKey, this.seq + 1, this.prev) });
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
    return line;
  }

  private writeLines(lines: readonly string[]): void {
    const text = Buffer.from(`${lines.join("\n")}\n`);
    writeSync(this.descriptor, text);
    this.fileBytes += text.length;
  }
}

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

function seqOf(line: string): number | null {
  try {
    const parsed = JSON.parse(line) as { seq?: unknown };
    return typeof parsed.seq === "number" ? parsed.seq : null;
  } catch {
    return null;
  }
}
