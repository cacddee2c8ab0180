import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // A hung test must fail, not stall CI; the simulator suites set their own, longer budget.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    coverage: {
      provider: "v8",
      include: ["raft/**/*.ts", "chaos/**/*.ts"],
      exclude: ["**/main.ts", "**/index.ts"],
      reporter: ["text-summary", "text"],
    },
  },
});
