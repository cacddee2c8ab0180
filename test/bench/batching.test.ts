// The benchmark's reading of a node's batching (bench/vs-etcd/batching.ts): the counters of a
// strongroom node's /metrics text, what changed between two readings, and bench:vs-etcd's
// "sr batch log/audit" column made of them.

import { expect, it } from "vitest";
import { batchCountersIn, batchingBetween, batchingColumn } from "../../bench/vs-etcd/batching.js";
import { MetricsText } from "../../chaos/metrics-text.js";

const parseBatchCounters = (text: string) => batchCountersIn(MetricsText.parse(text));

const reading = (
  logWrites: number,
  applied: number,
  auditWrites: number,
  auditEntries: number,
  received: number,
) =>
  [
    "# HELP strongroom_raft_log_append_seconds Raft log store appends.",
    'strongroom_raft_log_append_seconds_bucket{le="0.005"} 1',
    `strongroom_raft_log_append_seconds_sum ${logWrites / 1000}`,
    `strongroom_raft_log_append_seconds_count ${logWrites}`,
    `strongroom_raft_applied_index ${applied}`,
    "strongroom_raft_applied_index_lag 99",
    `strongroom_audit_write_entries_sum ${auditEntries}`,
    `strongroom_audit_write_entries_count ${auditWrites}`,
    `strongroom_raft_messages_total{direction="received",type="append"} ${received - 1}`,
    `strongroom_raft_messages_total{type="heartbeat",direction="received"} 1`,
    'strongroom_raft_messages_total{direction="sent",type="appendResponse"} 500',
  ].join("\n");

it("takes a node's counters from its /metrics, whatever the labels' order, and only the series named", () => {
  expect(parseBatchCounters(reading(40, 300, 20, 45, 70))).toEqual({
    logWrites: 40,
    appliedIndex: 300,
    auditWrites: 20,
    auditEntries: 45,
    raftMessagesReceived: 70,
  });
});

it("counts a series the node has not reported yet as zero", () => {
  expect(parseBatchCounters('nodejs_gc_duration_seconds_count{kind="minor"} 3\n')).toEqual({
    logWrites: 0,
    appliedIndex: 0,
    auditWrites: 0,
    auditEntries: 0,
    raftMessagesReceived: 0,
  });
});

it("gives what a node did between two readings, and its entries per log and per audit write", () => {
  const between = batchingBetween(
    parseBatchCounters(reading(40, 300, 20, 45, 70)),
    parseBatchCounters(reading(52, 400, 60, 125, 94)),
  );
  expect(between).toEqual({
    logWrites: 12,
    entriesApplied: 100,
    auditWrites: 40,
    auditEntries: 80,
    raftMessagesReceived: 24,
  });
  expect(batchingColumn(between)).toBe("8.3/2.0");
  // A read-only window writes no log entries; a node that audited nothing shows "-" there too.
  expect(batchingColumn({ ...between, logWrites: 0, entriesApplied: 0 })).toBe("-/2.0");
  expect(batchingColumn({ ...between, auditWrites: 0, auditEntries: 0 })).toBe("8.3/-");
});
