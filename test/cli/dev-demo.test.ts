// `strongroom demo`: the narrated in-process Raft cluster must elect, replicate, read, fail over and heal.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { runDevDemo } from "../../cli/dev-demo.js";

it("the dev demo elects a leader, fails over when it is cut off, and the old leader catches up", {
  timeout: 30_000,
}, async () => {
  const lines: string[] = [];
  await runDevDemo({ nodes: 3, tickMs: 10, print: (line) => lines.push(line) });
  const text = lines.join("\n");
  expect(text).toMatch(/n\d is leader of term \d+/);
  expect(text).toMatch(/write config\/version=3 committed at index \d+/);
  expect(lines.filter((line) => /linearizable read on n\d .*config\/version=3$/.test(line))).toHaveLength(3);
  expect(text).toMatch(/failover: n\d leads after \d+ ms/);
  expect(text).toMatch(/n\d is a follower of n\d again and has config\/version=4/);
});

it("strongroom demo rejects a bad --nodes with exit code 2", { timeout: 30_000 }, async () => {
  const run = promisify(execFile);
  const failure = await run("npx", ["tsx", "cli/main.ts", "demo", "--nodes", "4"]).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
  expect(failure?.code).toBe(2);
  expect(failure?.stderr).toMatch(/--nodes must be 3 or 5/);
});
