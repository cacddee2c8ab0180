// One line per experiment after a set of runs (chaos:smoke, chaos:full): what the note and
// docs/chaos.md quote - faults, operations, success rate, violations, lost writes, failover p50/p99
// and latency percentiles, each with its seed.

import { percentile } from "./checks.js";
import type { Report } from "./run-experiment.js";

export interface SummaryRow {
  readonly experiment: string;
  readonly seed: number;
  readonly pass: boolean;
  readonly faults: number;
  readonly operations: number;
  readonly successRate: number;
  readonly linearizability: string;
  readonly lostWrites: number;
  readonly failoverP50Ms: number | null;
  readonly failoverP99Ms: number | null;
  readonly writeP99Ms: number;
  readonly readP99Ms: number;
}

export function summarize(report: Report): SummaryRow {
  const failovers = report.checks.failoversMs.map((value) => value ?? Number.POSITIVE_INFINITY);
  return {
    experiment: report.experiment,
    seed: report.seed,
    pass: report.checks.pass,
    faults: report.faults.length,
    operations: report.operations,
    successRate: report.operations === 0 ? 0 : report.succeeded / report.operations,
    linearizability: report.checks.linearizability,
    lostWrites: report.checks.lostWrites,
    failoverP50Ms: failovers.length === 0 ? null : percentile(failovers, 50),
    failoverP99Ms: failovers.length === 0 ? null : percentile(failovers, 99),
    writeP99Ms: report.latencyMs.writeP99 ?? 0,
    readP99Ms: report.latencyMs.readP99 ?? 0,
  };
}

export function summaryTable(rows: readonly SummaryRow[]): string {
  const ms = (value: number | null) =>
    value === null ? "-" : Number.isFinite(value) ? value.toFixed(0) : "none";
  const header = [
    "experiment",
    "seed",
    "verdict",
    "faults",
    "ops",
    "success",
    "linearizable",
    "lost",
    "failover p50/p99 ms",
    "write/read p99 ms",
  ];
  const lines = rows.map((row) => [
    row.experiment,
    String(row.seed),
    row.pass ? "PASS" : "FAIL",
    String(row.faults),
    String(row.operations),
    `${(row.successRate * 100).toFixed(2)}%`,
    row.linearizability,
    String(row.lostWrites),
    `${ms(row.failoverP50Ms)}/${ms(row.failoverP99Ms)}`,
    `${ms(row.writeP99Ms)}/${ms(row.readP99Ms)}`,
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => line[column]?.length ?? 0)),
  );
  const format = (cells: readonly string[]) =>
    cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  ");
  return [format(header), ...lines.map(format)].join("\n");
}
