import { defineConfig } from "vitest/config";

/**
 * Test files that start no server on a fixed loopback address and time nothing: the Raft core and
 * its simulator, storage (in-process nodes), seals (each file its own SoftHSM token directory),
 * PKI, deploy files. They run two at a time, first; on 2 cores that halves their share of
 * `npm test`'s 10-minute budget.
 */
const independentFiles = [
  "test/raft/**/*.test.ts",
  "test/storage/**/*.test.ts",
  "test/conformance/**/*.test.ts",
  "test/hsm/**/*.test.ts",
  "test/pki/**/*.test.ts",
  "test/deploy/**/*.test.ts",
];
/**
 * The Raft log's crash test SIGKILLs its writer at random moments and checks that most kills land
 * mid-write: beside a CPU-bound file the starved writer spends more of its time between changes
 * (157-163 of 200 kills mid-write alone, 113-134 beside the simulator). It runs alone, last.
 */
const crashFiles = ["test/storage/raft-log-crash.test.ts"];

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
          name: "independent",
          include: independentFiles,
          exclude: crashFiles,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          // Clusters of processes and in-process nodes on fixed loopback addresses and ports, and
          // chaos experiments timed against their SLOs: one file at a time, after the others, so
          // that no two share an address or the CPU.
          name: "clusters",
          include: ["test/**/*.test.ts"],
          // The container suite has its own config and command (npm run test:containers).
          exclude: [...independentFiles, "test/containers/**", "**/node_modules/**"],
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
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
