// The run's HTML report (chaos/report-html.ts) for a long run: chaos:full's membership experiment
// returned 144,360 operations, and the report's Math.max over them threw, losing the verdict.

import { expect, it } from "vitest";
import type { RegisterOperation } from "../../chaos/checker/index.js";
import { renderReportHtml } from "../../chaos/report-html.js";
import type { Report } from "../../chaos/run-experiment.js";

it("renders the report of a run with 300,000 operations", () => {
  const operations: RegisterOperation[] = Array.from({ length: 300_000 }, (_, i) => ({
    id: i,
    client: i % 8,
    input: { kind: "put", key: "chaos/k1", value: `v${i}` },
    output: null,
    call: i / 10,
    return: i / 10 + 5,
  }));
  const report: Report = {
    experiment: "long-run",
    seed: 1,
    durationMs: 30_000,
    operations: operations.length,
    succeeded: operations.length,
    failures: {},
    faults: [],
    leaderChanges: [],
    latencyMs: {},
    checks: {
      linearizability: "linearizable",
      linearizabilityDetail: `${operations.length} operations`,
      crashedNodes: [],
      audit: [],
      harnessErrors: [],
      lostWrites: 0,
      counterexample: [],
      failoversMs: [],
      slos: [],
      watch: { watchers: 3, events: 0, reconnections: {}, problems: [], pass: true },
      pass: true,
    },
  };
  const html = renderReportHtml(report, operations);
  expect(html).toContain("<title>long-run (seed 1): PASS</title>");
  expect(html).toContain('watch: <b class="pass">every version of every key once, in order</b> (3 watchers');
  expect(html).toContain("300000 operations, 300000 succeeded");
  // The charts span the last return (30,004.9 ms), past the run's duration.
  expect(html).toMatch(/<svg/);
});
