// Durations in messages people read, in the largest unit that gives a whole number, as the CLI
// takes them (90s, 15m, 1h, 7d): "3h", not "10800000".

const units: readonly (readonly [string, number])[] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
];

export function formatDuration(ms: number): string {
  for (const [unit, size] of units) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
