// The run's report for people: one self-contained HTML file (no script, no external asset) with
// the verdict, the SLO table, throughput and latency over time as inline SVG with the fault
// windows shaded and leader changes marked, and, for a linearizability failure, the smallest
// failing sub-history on a timeline. Values never appear: the history holds only the workload's own generated strings.

import type { RegisterOperation } from "./checker/index.js";
import type { Report } from "./run-experiment.js";
import type { WatchCheck } from "./watch-check.js";

const bucketMs = 250;

export function renderReportHtml(report: Report, operations: readonly RegisterOperation[]): string {
  const finished = operations.filter((operation) => operation.return !== Infinity);
  // A loop, not Math.max(...): a membership run of chaos:full returned 144,360 operations, more
  // arguments than a call takes (RangeError: Maximum call stack size exceeded).
  let end = report.durationMs;
  for (const operation of finished) end = Math.max(end, operation.return);
  const buckets = Math.max(1, Math.ceil(end / bucketMs));
  const throughput = new Array<number>(buckets).fill(0);
  const latencyMax = new Array<number>(buckets).fill(0);
  for (const operation of finished) {
    const bucket = Math.min(buckets - 1, Math.floor(operation.return / bucketMs));
    throughput[bucket] = (throughput[bucket] ?? 0) + 1000 / bucketMs;
    latencyMax[bucket] = Math.max(latencyMax[bucket] ?? 0, operation.return - operation.call);
  }
  const width = 900;
  const height = 180;
  const x = (ms: number) => (ms / end) * width;
  const chart = (title: string, series: readonly number[], unit: string) => {
    const top = Math.max(1, ...series);
    const points = series
      .map(
        (value, i) =>
          `${x((i + 0.5) * bucketMs).toFixed(1)},${(height - (value / top) * (height - 10)).toFixed(1)}`,
      )
      .join(" ");
    const shades = report.faults
      .map(
        (fault) =>
          `<rect x="${x(fault.atMs).toFixed(1)}" y="0" width="${Math.max(1, x(fault.healedAtMs) - x(fault.atMs)).toFixed(1)}" height="${height}" fill="#f4c7c3"><title>${escapeHtml(`${fault.nemesis} ${fault.target}`)}</title></rect>`,
      )
      .join("");
    const leaders = report.leaderChanges
      .map(
        (change) =>
          `<line x1="${x(change.atMs).toFixed(1)}" x2="${x(change.atMs).toFixed(1)}" y1="0" y2="${height}" stroke="#3367d6" stroke-dasharray="3,3"><title>leader ${escapeHtml(change.leader)}</title></line>`,
      )
      .join("");
    return `<h2>${escapeHtml(title)}</h2><svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(title)}">${shades}${leaders}<polyline fill="none" stroke="#202124" stroke-width="1.5" points="${points}"/><text x="4" y="12" font-size="11">max ${Math.round(top)} ${escapeHtml(unit)}</text></svg>`;
  };
  const slos = report.checks.slos
    .map(
      (slo) =>
        `<tr><td>${escapeHtml(slo.name)}</td><td>${escapeHtml(Number.isFinite(slo.value) ? String(Math.round(slo.value * 1000) / 1000) : String(slo.value))}</td><td>${escapeHtml(slo.target)}</td><td class="${slo.pass ? "pass" : "fail"}">${slo.pass ? "pass" : "FAIL"}</td></tr>`,
    )
    .join("");
  const faults = report.faults
    .map(
      (fault) =>
        `<tr><td>${escapeHtml(fault.nemesis)}</td><td>${escapeHtml(fault.target)}</td><td>${escapeHtml(fault.detail)}</td><td>${Math.round(fault.atMs)}${fault.lateMs > 0 ? ` (${fault.lateMs} late)` : ""}</td><td>${Math.round(fault.healedAtMs)}</td></tr>`,
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(report.experiment)} (seed ${report.seed}): ${report.checks.pass ? "PASS" : "FAIL"}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#202124}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.pass{color:#188038}.fail{color:#c5221f;font-weight:bold}svg{border:1px solid #ddd;background:#fff}</style></head>
<body>
<h1>${escapeHtml(report.experiment)}: <span class="${report.checks.pass ? "pass" : "fail"}">${report.checks.pass ? "PASS" : "FAIL"}</span></h1>
<p>seed ${report.seed} · ${report.operations} operations, ${report.succeeded} succeeded · linearizability: <b>${escapeHtml(report.checks.linearizability)}</b> (${escapeHtml(report.checks.linearizabilityDetail)})${report.checks.crashedNodes.length > 0 ? ` · nodes that died: ${escapeHtml(report.checks.crashedNodes.join(", "))}` : ""}</p>
<p>watch: ${watchLine(report.checks.watch)}</p>
<h2>SLOs</h2><table><tr><th>SLO</th><th>value</th><th>target</th><th></th></tr>${slos}</table>
<h2>Faults</h2><table><tr><th>nemesis</th><th>node</th><th>what</th><th>at ms</th><th>healed at ms</th></tr>${faults}</table>
${chart("Throughput (operations/s)", throughput, "ops/s")}
${chart("Slowest operation per 250 ms (ms)", latencyMax, "ms")}
<p>Shaded: fault windows. Dashed: leader changes.</p>
${counterexampleTimeline(report.checks.counterexample)}
</body></html>
`;
}

/**
 * The smallest failing sub-history on a timeline: one row per client, each operation a bar from
 * its call to its return (open-ended and dashed when its outcome is unknown), labelled with what it
 * did and got. No linearization of these operations exists.
 */
function counterexampleTimeline(operations: readonly RegisterOperation[]): string {
  if (operations.length === 0) return "";
  const clients = [...new Set(operations.map((operation) => operation.client))].sort((a, b) => a - b);
  const returns = operations.map((operation) =>
    operation.return === Infinity ? operation.call : operation.return,
  );
  const start = operations.reduce((earliest, operation) => Math.min(earliest, operation.call), Infinity);
  const end = returns.reduce((latest, at) => Math.max(latest, at), start + 1);
  const span = end - start;
  const width = 900;
  const row = 34;
  const left = 90;
  const x = (ms: number) => left + ((ms - start) / span) * (width - left - 20);
  const bars = operations
    .map((operation) => {
      const y = clients.indexOf(operation.client) * row + 8;
      const known = operation.return !== Infinity;
      const x1 = x(operation.call);
      const x2 = known ? Math.max(x1 + 3, x(operation.return)) : width - 10;
      const label =
        operation.input.kind === "put"
          ? `put ${operation.input.value}${known ? "" : " (unknown)"}`
          : operation.input.kind === "get"
            ? `get → ${operation.output === undefined ? "?" : String(operation.output)}`
            : `cas ${String(operation.input.expected)}→${operation.input.value}`;
      const fill = operation.input.kind === "get" ? "#d2e3fc" : "#fde7c2";
      return `<rect x="${x1.toFixed(1)}" y="${y}" width="${(x2 - x1).toFixed(1)}" height="18" fill="${fill}" stroke="#5f6368"${known ? "" : ' stroke-dasharray="4 3"'}><title>${escapeHtml(`${label}: called ${operation.call.toFixed(1)} ms, ${known ? `returned ${operation.return.toFixed(1)} ms` : "outcome unknown"}`)}</title></rect><text x="${(x1 + 3).toFixed(1)}" y="${y + 13}" font-size="11">${escapeHtml(label)}</text>`;
    })
    .join("");
  const labels = clients
    .map(
      (client, index) =>
        `<text x="4" y="${index * row + 21}" font-size="11">${client >= 1_000_000_000 ? "final read" : `client ${client}`}</text>`,
    )
    .join("");
  const height = clients.length * row + 24;
  return `<h2>Not linearizable: the smallest failing history found (${operations.length} operations on ${escapeHtml(operations[0]?.input.key ?? "")})</h2>
<p>No order of these operations, each taking effect between its call and its return, explains what they returned. ${start.toFixed(1)}-${end.toFixed(1)} ms on the workload's clock.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${labels}${bars}<text x="${left}" y="${height - 4}" font-size="11">${start.toFixed(1)} ms</text><text x="${width - 90}" y="${height - 4}" font-size="11">${end.toFixed(1)} ms</text></svg>`;
}

function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** What the watchers delivered: complete, or the first problems. */
function watchLine(watch: WatchCheck): string {
  const what = `${watch.watchers} watchers, ${watch.events} events, reconnections ${escapeHtml(JSON.stringify(watch.reconnections))}`;
  return watch.pass
    ? `<b class="pass">every version of every key once, in order</b> (${what})`
    : `<b class="fail">${escapeHtml(watch.problems.slice(0, 5).join("; "))}</b> (${what})`;
}
