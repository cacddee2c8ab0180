// Durations in messages: the largest unit that gives a whole number, as the CLI takes them.

import { expect, it } from "vitest";
import { formatDuration } from "../../server/durations.js";

it("writes a duration in the largest whole unit, as the CLI's flags take it", () => {
  expect(formatDuration(10_800_000)).toBe("3h");
  expect(formatDuration(5_400_000)).toBe("90m");
  expect(formatDuration(2_764_800_000)).toBe("32d");
  expect(formatDuration(700_000)).toBe("700s");
  expect(formatDuration(1500)).toBe("1500ms");
  expect(formatDuration(0)).toBe("0ms");
});
