// How a strongroom node's work was batched over a window, from its /metrics: the entries each of
// its Raft log writes and audit writes held, and the Raft messages it received per operation.
// What a write to disk, a trip through libuv's thread pool and a peer message cost is shared by the
// calls of a batch, so a cell's CPU per operation follows these figures: 256 B writes spread over
// the members at 16 clients held 2.7 entries per log write and cost 2.1 ms of CPU per write, the
// same writes all sent to the leader 8.3 entries and 1.0 ms (docs/performance.md, sixty-seventh
// session).

import type { MetricsText } from "../../chaos/metrics-text.js";

/** A node's counters so far, as its /metrics gives them. */
export interface BatchCounters {
  /** Writes of the Raft log store (`strongroom_raft_log_append_seconds_count`). */
  readonly logWrites: number;
  /** The last index the node applied (`strongroom_raft_applied_index`). */
  readonly appliedIndex: number;
  /** Writes of the audit trail, and the entries they held (`strongroom_audit_write_entries`). */
  readonly auditWrites: number;
  readonly auditEntries: number;
  /** Raft messages received, of every type (`strongroom_raft_messages_total`). */
  readonly raftMessagesReceived: number;
}

/** A node's batching between two readings. */
export interface Batching {
  readonly logWrites: number;
  readonly entriesApplied: number;
  readonly auditWrites: number;
  readonly auditEntries: number;
  readonly raftMessagesReceived: number;
}

/** The counters so far, from a node's /metrics; a series the node has not reported yet counts 0. */
export function batchCountersIn(metrics: MetricsText): BatchCounters {
  const applied = metrics
    .samples("strongroom_raft_applied_index")
    .map((sample) => sample.value)
    .filter(Number.isFinite);
  return {
    logWrites: metrics.sum("strongroom_raft_log_append_seconds_count"),
    appliedIndex: Math.max(0, ...applied),
    auditWrites: metrics.sum("strongroom_audit_write_entries_count"),
    auditEntries: metrics.sum("strongroom_audit_write_entries_sum"),
    raftMessagesReceived: metrics.sum("strongroom_raft_messages_total", { direction: "received" }),
  };
}

/** What a node did between two readings. */
export function batchingBetween(before: BatchCounters, after: BatchCounters): Batching {
  return {
    logWrites: after.logWrites - before.logWrites,
    entriesApplied: after.appliedIndex - before.appliedIndex,
    auditWrites: after.auditWrites - before.auditWrites,
    auditEntries: after.auditEntries - before.auditEntries,
    raftMessagesReceived: after.raftMessagesReceived - before.raftMessagesReceived,
  };
}

/**
 * The bench's column for one node: entries applied per Raft log write / audit entries per audit
 * write, "-" for a side that wrote nothing (a read-only cell writes no log entries).
 */
export function batchingColumn(batching: Batching): string {
  const per = (count: number, writes: number) => (writes <= 0 ? "-" : (count / writes).toFixed(1));
  return `${per(batching.entriesApplied, batching.logWrites)}/${per(batching.auditEntries, batching.auditWrites)}`;
}
