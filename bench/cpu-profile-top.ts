// `tsx bench/cpu-profile-top.ts FILE.cpuprofile... [--top N]`: where a process spent its CPU, from
// V8 profiles (node --cpu-prof): self time by function and by file, and time under each of our
// own files (inclusive: everything it called, counted once per sample however deep), summed over
// the files given (one per node of a cluster, say), as Markdown tables. What led each change in
// docs/performance.md. Self time of a flat profile names no culprit; inclusive time says which
// of our stages (the audit, the authorization, the Raft loop) its cost sits under.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { printTable } from "./table.js";

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
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
const underOurFile = new Map<string, number>();
let total = 0;
for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  // Our own files on each node's stack, computed once per profile node rather than per sample.
  const ourFilesOnStack = new Map<number, ReadonlySet<string>>();
  const ourFilesOf = (id: number): ReadonlySet<string> => {
    const known = ourFilesOnStack.get(id);
    if (known !== undefined) return known;
    const parent = parents.get(id);
    const files = new Set(parent === undefined ? [] : ourFilesOf(parent));
    const file = ourFile(nodes.get(id)?.callFrame.url ?? "");
    if (file !== null) files.add(file);
    ourFilesOnStack.set(id, files);
    return files;
  };
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
    for (const file of ourFilesOf(id)) underOurFile.set(file, (underOurFile.get(file) ?? 0) + micros);
    total += micros;
  }
}
/** The repository-relative path of one of our source files, or null for Node's, a package's or V8's. */
function ourFile(url: string): string | null {
  if (!url.startsWith("file://") || url.includes("/node_modules/")) return null;
  const path = url.replace(/^file:\/\//, "");
  const inRepository = path.match(/\/((?:server|raft|storage|hsm|client|cli|agent|chaos|proto)\/.*)$/);
  return inRepository?.[1] ?? null;
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
process.stdout.write("\nunder our files (inclusive: the file on the stack, whatever it called)\n");
printTable(["file", "s", "share"], rows(underOurFile));
