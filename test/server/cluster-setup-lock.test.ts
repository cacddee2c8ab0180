import { expect, it } from "vitest";
import { ClusterSetupLock } from "../../server/cluster-setup-lock.js";

it("refuses an init or a restore while another runs on the node, and takes the next once it ends", async () => {
  const lock = new ClusterSetupLock();
  let finish = () => {};
  const restoring = lock.run(
    "a snapshot restore",
    () =>
      new Promise<string>((resolve) => {
        finish = () => resolve("restored");
      }),
  );
  await expect(lock.run("an init", async () => "initialized")).rejects.toMatchObject({
    code: "ALREADY_INITIALIZED",
    message: "a snapshot restore is already running on the leader",
  });
  finish();
  expect(await restoring).toBe("restored");
  await expect(lock.run("an init", () => Promise.reject(new Error("no quorum")))).rejects.toThrow(
    "no quorum",
  );
  expect(await lock.run("an init", async () => "initialized")).toBe("initialized");
});
