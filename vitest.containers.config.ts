// The container suite (`npm run test:containers`): the cluster from deploy/Dockerfile's image,
// through testcontainers. It needs a Docker engine and builds the image first (minutes the first
// time), so `npm test` does not run it (scripts/container-suite-note.mjs says so).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/containers/**/*.containers.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 1_200_000,
    pool: "forks",
    // One at a time: each file builds the image and starts a cluster.
    fileParallelism: false,
  },
});
