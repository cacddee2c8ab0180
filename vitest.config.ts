import { defineConfig } from "vitest/config";

/**
 * Two at a time, first: the Raft core and its simulator, storage (in-process nodes), seals (each
 * file its own SoftHSM token directory), PKI, deploy files, and the clusters of processes and
 * in-process nodes whose bounds on time are loose enough to hold with a second file beside them (a
 * watch within a second, an agent's reload within two). Every file that starts nodes has its own
 * loopback addresses and ports (test/server/cluster-harness.ts), so two never meet. Run this way
 * rather than one cluster file at a time, `npm test` took 466-473 s instead of 555 s on 2 cores.
 */
const sharedFiles = ["test/**/*.test.ts"];
/**
 * The shared files run in two long-lived workers, not a fresh process each (`isolate: false`): a
 * file's start then costs its own imports, not the gRPC stack, the server and vitest's all over
 * again. Measured on 2 cores, the 90 files under 3 s took 47 s instead of 79, and `npm test` 528
 * and 545 s instead of 562 (the timed and crash files, isolated still, vary by 15 s between runs).
 * It holds because every file stops what it starts (clusters, watches, timers) in its hooks and
 * puts back any environment variable it sets; a file that relies on another's leftovers would be
 * a bug in it.
 */
const sharedFilesIsolated = false;
/**
 * Files timed against their SLOs (failover within a second, chaos runs checked against their
 * budgets): one at a time, after the others, each with the machine to itself. Named one by one:
 * the chaos command's own tests and the checkers' unit tests run with the shared files.
 */
const timedFiles = [
  "test/chaos/experiments.test.ts",
  "test/chaos/nemeses.test.ts",
  "test/chaos/cluster-nemeses.test.ts",
  "test/server/failover.test.ts",
];
/**
 * The Raft log's crash test SIGKILLs its writer at random moments and checks that most kills land
 * mid-write: beside a CPU-bound file the starved writer spends more of its time between changes
 * (157-163 of 200 kills mid-write alone, 113-134 beside the simulator). It runs alone, last.
 */
const crashFiles = ["test/storage/raft-log-crash.test.ts"];
/** The container suite has its own config and command (npm run test:containers). */
const containerFiles = ["test/containers/**"];

export default defineConfig({
  test: {
    // A hung test must fail, not stall CI; the simulator suites set their own, longer budget.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "shared",
          include: sharedFiles,
          exclude: [...timedFiles, ...crashFiles, ...containerFiles, "**/node_modules/**"],
          maxWorkers: 2,
          isolate: sharedFilesIsolated,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: "timed", include: timedFiles, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        test: { name: "crash", include: crashFiles, maxWorkers: 1, sequence: { groupOrder: 2 } },
      },
    ],
    coverage: {
      provider: "v8",
      include: [
        "raft/**/*.ts",
        "chaos/**/*.ts",
        "storage/**/*.ts",
        "hsm/**/*.ts",
        "server/**/*.ts",
        "cli/**/*.ts",
      ],
      exclude: ["**/main.ts", "**/index.ts", "test/**"],
      // The bar for the consensus core; `npm run coverage` fails below it.
      thresholds: { "raft/core/**": { lines: 90 } },
      reporter: ["text-summary", "text"],
    },
  },
});
