// Durations as people type them on the command line and in the environment: "90s", "15m", "1h",
// "7d", "500ms", or plain milliseconds.

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The duration `text` names, in ms; null when it names none (or one too long to count exactly). */
export function parseDuration(text: string): number | null {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) return null;
  const amount = Number(match[1]) * (durationUnits[match[2] ?? "ms"] ?? 1);
  return Number.isSafeInteger(amount) ? amount : null;
}
