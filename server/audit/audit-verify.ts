// `strongroom audit verify`: checks audit files, in order, against the chain they carry. Every
// line must parse, follow the previous line's sequence number, and name the previous line's hash;
// each file must start with a header linked to the previous file; with the audit key, every
// checkpoint's MAC must match. Each problem is reported with its file and line and what it means:
// an edited line, a deleted or reordered one, a missing file, a forged checkpoint, a truncated end.
// Completeness too: every request entry must have its response entry. A trail that ends in its
// closing checkpoint (its node closed it) with a request unanswered has lost an entry; a trail
// that does not (a running or crashed node) may have calls in flight - a Watch's request entry
// stays open as long as the stream - which are reported as such. Such a trail's end is a problem
// unless the caller says the node is running (`live`): entries after the last checkpoint are
// chained but no MAC covers them yet, so they could have been cut off unseen.

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { checkpointMac, hashLine, macMatches } from "./audit-chain.js";

export interface AuditVerification {
  readonly entries: number;
  readonly checkpoints: number;
  readonly problems: readonly string[];
  /** Request ids with a request entry and no response entry. */
  readonly unanswered: readonly string[];
  /** The trail ends with its closing checkpoint: its node closed it. */
  readonly closed: boolean;
  /** Lines after the last checkpoint (none once closed): chained, not covered by a MAC yet. */
  readonly afterLastCheckpoint: number;
}

export interface AuditVerifyOptions {
  /** The files are a running node's: their end need not be a closing checkpoint. */
  readonly live?: boolean;
}

export function verifyAuditFiles(
  files: readonly string[],
  auditKey: Uint8Array | null,
  options: AuditVerifyOptions = {},
): AuditVerification {
  const problems: string[] = [];
  let prev: string | null = null;
  let seq: number | null = null;
  let entries = 0;
  let checkpoints = 0;
  let lastType = "";
  let lastClosing = false;
  let afterLastCheckpoint = 0;
  const open = new Set<string>();
  for (const file of files) {
    const name = basename(file);
    const text = readFileSync(file, "utf8");
    if (text.length > 0 && !text.endsWith("\n")) {
      problems.push(
        `${name}: the last line is incomplete (the file was truncated, or its node crashed mid-write)`,
      );
    }
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    lines.forEach((line, position) => {
      const where = `${name}:${position + 1}`;
      let entry: {
        v?: unknown;
        seq?: unknown;
        prev?: unknown;
        type?: unknown;
        mac?: unknown;
        closed?: unknown;
        requestId?: unknown;
      };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        if (!(position === lines.length - 1 && !text.endsWith("\n")))
          problems.push(`${where}: not a JSON line (edited or damaged)`);
        return;
      }
      if (typeof entry.seq !== "number" || typeof entry.prev !== "string") {
        problems.push(`${where}: no sequence number or chain hash (not an audit line)`);
        return;
      }
      if (position === 0 && entry.type !== "header")
        problems.push(`${where}: the file does not start with a header (its start was cut off)`);
      if (seq !== null && entry.seq !== seq + 1) {
        problems.push(
          entry.seq > seq + 1
            ? `${where}: entries ${seq + 1}${entry.seq - 1 > seq + 1 ? `-${entry.seq - 1}` : ""} are missing (deleted${position === 0 ? ", or a whole file" : ""})`
            : `${where}: entry ${entry.seq} comes after ${seq} (reordered or duplicated)`,
        );
      } else if (prev !== null && entry.prev !== prev) {
        problems.push(
          `${where}: the previous line (entry ${seq}) was edited: its hash does not match the chain`,
        );
      }
      // Format 1 had no closing flag: its checkpoint at the end of a trail was the closing one.
      const closing = entry.type === "checkpoint" && (entry.closed === true || entry.v === 1);
      if (entry.type === "checkpoint") {
        checkpoints += 1;
        afterLastCheckpoint = 0;
        if (
          auditKey !== null &&
          (typeof entry.mac !== "string" ||
            !macMatches(checkpointMac(auditKey, entry.seq, entry.prev, entry.closed === true), entry.mac))
        ) {
          problems.push(
            `${where}: the checkpoint's MAC does not match (the chain before it was rewritten, or its closing flag changed)`,
          );
        }
      } else {
        afterLastCheckpoint += 1;
        if (entry.type === "request" || entry.type === "response") {
          entries += 1;
          const id = String(entry.requestId);
          if (entry.type === "request") open.add(id);
          else if (!open.delete(id))
            problems.push(`${where}: a response to request ${id}, whose request entry is missing`);
        }
      }
      lastType = String(entry.type);
      lastClosing = closing;
      seq = entry.seq;
      prev = hashLine(line);
    });
  }
  const closed = lastType === "checkpoint" && lastClosing;
  if (files.length > 0 && !closed && options.live !== true && problems.length === 0) {
    problems.push(
      "the last file does not end with a closing checkpoint: entries after the last checkpoint may have been cut off (or the node is running: --live, or crashed, or stopped while sealed: a sealed node has no audit key, and its next unsealed start's first checkpoint covers them)",
    );
  }
  const unanswered = [...open];
  if (closed) {
    for (const id of unanswered) problems.push(`request ${id} has no response entry (one was lost)`);
  }
  return { entries, checkpoints, problems, unanswered, closed, afterLastCheckpoint };
}
