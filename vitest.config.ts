import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The container suite has its own config and command (npm run test:containers).
    exclude: ["test/containers/**", "**/node_modules/**"],
    // A hung test must fail, not stall CI; the simulator suites set their own, longer budget.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
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
