// The leader's periodic task: runs every interval while it may, is skipped while it may not (a
// follower, a sealed node), never runs twice at once however slow a run is, reports a failed run and
// goes on, and stops.

import { expect, it } from "vitest";
import { PeriodicTask } from "../../server/lifecycle/periodic-task.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("runs while it may, one run at a time, and stops", async () => {
  let mayRun = false;
  let running = 0;
  let mostAtOnce = 0;
  let runs = 0;
  const task = new PeriodicTask(
    10,
    () => mayRun,
    async () => {
      running += 1;
      mostAtOnce = Math.max(mostAtOnce, running);
      runs += 1;
      await sleep(35); // slower than the interval
      running -= 1;
    },
    (error) => {
      throw error;
    },
  );
  task.start();
  await sleep(60);
  expect(runs).toBe(0);
  mayRun = true;
  await sleep(200);
  expect(runs).toBeGreaterThanOrEqual(3);
  expect(mostAtOnce).toBe(1);
  task.stop();
  await sleep(50);
  const stoppedAt = runs;
  await sleep(100);
  expect(runs).toBe(stoppedAt);
});

it("reports a run that fails and runs again at its time", async () => {
  const errors: unknown[] = [];
  let runs = 0;
  const task = new PeriodicTask(
    10,
    () => true,
    async () => {
      runs += 1;
      if (runs === 1) throw new Error("the first run fails");
    },
    (error) => errors.push(error),
  );
  task.start();
  await sleep(100);
  task.stop();
  expect(errors).toEqual([new Error("the first run fails")]);
  expect(runs).toBeGreaterThanOrEqual(3);
});
