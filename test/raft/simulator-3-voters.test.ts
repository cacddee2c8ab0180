// The deterministic simulator over 2,500 seeds of a three-voter cluster (with and without learners,
// PreVote and CheckQuorum): no safety property may break, the cluster must recover after the
// faults heal, and every client history must be linearizable. A failure names the seed to replay.

import { expect, it } from "vitest";
import { runSimulation } from "../../raft/sim/simulator.js";

it("2,500 seeds of three voters under faults: no violation", { timeout: 300_000 }, () => {
  const failures: string[] = [];
  let unknownHistories = 0;
  for (let seed = 1; seed <= 2500; seed++) {
    const result = runSimulation({ seed, steps: 3000, voters: 3 });
    if (result.violation !== null)
      failures.push(`seed ${seed}: ${result.violation.message} (npm run sim -- --seed ${seed} --trace)`);
    if (result.stats.linearizability === "unknown") unknownHistories++;
  }
  expect(failures).toEqual([]);
  expect(unknownHistories).toBe(0);
});
