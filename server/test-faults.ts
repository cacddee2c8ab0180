// Deliberate bugs, for proving that the chaos harness and its checks can fail: switched on only by
// the STRONGROOM_TEST_FAULTS environment variable (comma-separated names), refused if unknown, and
// announced at the node's start in its log. Never set it outside a test.
//
//   stale-reads   a linearizable read is served from local state without a ReadIndex round

export const testFaultNames = ["stale-reads"] as const;
export type TestFault = (typeof testFaultNames)[number];

export function activeTestFaults(env: NodeJS.ProcessEnv = process.env): ReadonlySet<TestFault> {
  const names = (env.STRONGROOM_TEST_FAULTS ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  for (const name of names) {
    if (!(testFaultNames as readonly string[]).includes(name))
      throw new Error(
        `STRONGROOM_TEST_FAULTS: unknown test fault ${JSON.stringify(name)} (known: ${testFaultNames.join(", ")})`,
      );
  }
  return new Set(names as TestFault[]);
}
