// What bench:vs-etcd's report says of the strongroom nodes' settings (bench/vs-etcd/server-settings.ts):
// every setting that moves the figures named, the defaults said to be the defaults, so that two
// results.md files can be told apart without the command that made them.

import { expect, it } from "vitest";
import { describeServerSettings } from "../../bench/vs-etcd/server-settings.js";

it("names the defaults as defaults", () => {
  const text = describeServerSettings({
    auditDurability: "disk",
    leaseReads: false,
    requestIds: false,
    nodeOptions: [],
    serverNodeVersion: "v20.20.2",
  });
  expect(text).toBe(
    "the strongroom nodes on Node v20.20.2 with no Node flags; audit durability disk (each entry on disk before its call goes on; the default); read leases off (every linearizable read waits for a heartbeat round; the default); writes without request ids",
  );
});

it("names each setting a run changed, and the flags in their order", () => {
  const text = describeServerSettings({
    auditDurability: "os",
    leaseReads: true,
    requestIds: true,
    nodeOptions: ["--max-semi-space-size=16", "--perf-basic-prof-only-functions"],
    serverNodeVersion: "v24.22.3",
  });
  expect(text).toContain(
    "on Node v24.22.3 with Node flags --max-semi-space-size=16 --perf-basic-prof-only-functions;",
  );
  expect(text).toContain("audit durability os (each entry handed to the OS");
  expect(text).toContain("read leases on");
  expect(text).toContain("writes with request ids");
  expect(text).not.toContain("the default");
});
