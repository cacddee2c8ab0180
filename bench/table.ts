// A Markdown table on stdout, numbers right-aligned: what every benchmark prints, ready for a note.
export function printTable(header: readonly string[], lines: readonly (readonly string[])[]): void {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...lines.map((line) => (line[i] ?? "").length)),
  );
  const format = (cells: readonly string[]) =>
    `| ${cells.map((cell, i) => cell.padStart(widths[i] ?? 0)).join(" | ")} |`;
  process.stdout.write(`${format(header)}\n|${widths.map((width) => "-".repeat(width + 2)).join("|")}|\n`);
  for (const line of lines) process.stdout.write(`${format(line)}\n`);
}
