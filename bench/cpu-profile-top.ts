// `tsx bench/cpu-profile-top.ts FILE.cpuprofile... [--top N]`: where a process spent its CPU, from
// V8 profiles (node --cpu-prof): self time by function and by file, summed over the files given
// (one per node of a cluster, say), as Markdown tables. What led each change in
// docs/performance.md.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { printTable } from "./table.js";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "25" } },
});
if (positionals.length === 0) {
  process.stderr.write("usage: tsx bench/cpu-profile-top.ts FILE.cpuprofile... [--top N]\n");
  process.exit(2);
}
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
let total = 0;
for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  for (const [index, id] of profile.samples.entries()) {
    const micros = profile.timeDeltas[index] ?? 0;
    const frame = nodes.get(id)?.callFrame;
    if (frame === undefined) continue;
    const where = frame.url
      .replace(/^file:\/\//, "")
      .replace(/^.*\/node_modules\//, "npm:")
      .replace(/^.*\/work\/main\//, "");
    const name = `${frame.functionName || "(anonymous)"} ${where === "" ? "" : `${where}:${frame.lineNumber + 1}`}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
    const fileKey = where === "" ? frame.functionName : where;
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + micros);
    total += micros;
  }
}
const top = Number(values.top);
const rows = (entries: Map<string, number>) =>
  [...entries]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, micros]) => [name, (micros / 1e6).toFixed(2), `${((micros / total) * 100).toFixed(1)}%`]);
process.stdout.write(`total sampled: ${(total / 1e6).toFixed(2)} s\n\nby function (self time)\n`);
printTable(["function", "s", "share"], rows(byFunction));
process.stdout.write("\nby file (self time)\n");
printTable(["file", "s", "share"], rows(byFile));
