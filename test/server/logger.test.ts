// The node's logger redacts every field that could hold a secret, at the top level and nested,
// even when a careless call passes one: the second line of defence behind never logging them.

import { expect, it } from "vitest";
import { createLogger } from "../../server/logger.js";

it("redacts values, shares, tokens, PINs and keys wherever they appear", () => {
  const lines: string[] = [];
  const logger = createLogger("n1", "info", { write: (line: string) => lines.push(line) });
  logger.info(
    {
      value: "hunter2",
      share: "0wq1m-abcde",
      request: { token: "s.secret", pin: "1234" },
      call: { body: { key: "k3y" } },
    },
    "careless",
  );
  const output = lines.join("");
  for (const secret of ["hunter2", "0wq1m-abcde", "s.secret", "1234", "k3y"])
    expect(output).not.toContain(secret);
  const entry = JSON.parse(lines[0] ?? "{}") as Record<string, unknown>;
  expect(entry).toMatchObject({ value: "[redacted]", share: "[redacted]", node: "n1", msg: "careless" });
  expect(entry.request).toEqual({ token: "[redacted]", pin: "[redacted]" });
  expect(entry.call).toEqual({ body: { key: "[redacted]" } });
});
