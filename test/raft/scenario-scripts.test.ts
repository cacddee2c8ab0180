// Runs every script in test/raft/scenarios/ and compares its transcript with the file.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runScenarioScript } from "./scenario-script.js";

const folder = new URL("./scenarios/", import.meta.url);

describe("scenario scripts (golden transcripts)", () => {
  for (const name of readdirSync(folder)
    .filter((file) => file.endsWith(".txt"))
    .sort()) {
    it(name.replace(/\.txt$/, ""), () => {
      const path = new URL(name, folder);
      const expected = readFileSync(path, "utf8");
      const actual = runScenarioScript(expected);
      if (process.env.UPDATE_GOLDEN === "1") writeFileSync(path, actual);
      else expect(actual).toBe(expected);
    });
  }
});
