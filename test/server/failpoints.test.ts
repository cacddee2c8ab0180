// The test failpoints (server/failpoints.ts) that the chaos harness arms in running nodes: off
// unless STRONGROOM_TEST_FAILPOINTS names a control file; a sleep delays the point; a control file
// that does not parse, or names a point or an action that does not exist, disarms everything and
// says why; an empty or missing file disarms. (The crash action kills the process: the chaos
// harness's crash-points test runs it on real nodes.)

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Failpoints, failpointsFromEnv } from "../../server/failpoints.js";

const directory = mkdtempSync(join(tmpdir(), "strongroom-failpoints-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

it("is off unless STRONGROOM_TEST_FAILPOINTS names a control file", () => {
  expect(failpointsFromEnv({})).toBeNull();
  expect(failpointsFromEnv({ STRONGROOM_TEST_FAILPOINTS: "" })).toBeNull();
  expect(failpointsFromEnv({ STRONGROOM_TEST_FAILPOINTS: join(directory, "x.json") })).toBeInstanceOf(
    Failpoints,
  );
});

it("delays an armed point by its sleep, and nothing else", async () => {
  const file = join(directory, "sleep.json");
  writeFileSync(file, JSON.stringify({ "before-persist": { sleepMs: 80 } }));
  const failpoints = new Failpoints(file);
  expect(failpoints.reload()).toBeNull();
  expect(failpoints.hit("after-apply")).toBeUndefined();
  const started = performance.now();
  await failpoints.hit("before-persist");
  expect(performance.now() - started).toBeGreaterThanOrEqual(75);
  // Disarmed by an empty object, and by a missing file.
  writeFileSync(file, "{}");
  expect(failpoints.reload()).toBeNull();
  expect(failpoints.hit("before-persist")).toBeUndefined();
  expect(new Failpoints(join(directory, "missing.json")).reload()).toBeNull();
});

it("disarms everything and says why when the control file is wrong", () => {
  const file = join(directory, "bad.json");
  const failpoints = new Failpoints(file);
  writeFileSync(file, JSON.stringify({ "before-persist": { sleepMs: 50 } }));
  failpoints.reload();
  writeFileSync(file, "{not json");
  expect(failpoints.reload()).toMatch(/bad\.json: .*JSON/);
  expect(failpoints.hit("before-persist")).toBeUndefined();
  writeFileSync(file, JSON.stringify({ "before-lunch": "crash" }));
  expect(failpoints.reload()).toMatch(/bad\.json: /);
  writeFileSync(file, JSON.stringify({ "after-apply": "explode" }));
  expect(failpoints.reload()).toMatch(/bad\.json: after-apply: /);
  writeFileSync(file, JSON.stringify({ "after-apply": { sleepMs: 0 } }));
  expect(failpoints.reload()).toMatch(/bad\.json: after-apply/);
  expect(failpoints.describe()).toBe("{}");
});
