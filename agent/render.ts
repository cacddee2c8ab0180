// What the agent writes: a secret's value as it is, or through a small template ({{ value }},
// {{ version }}, {{ path }}; nothing else, so a template cannot run code or read other secrets),
// written atomically: a temporary file in the same directory, created with its final mode, synced,
// then renamed over the old one, so a reader sees the old file or the new one, never half of one.

import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

const placeholder = /\{\{\s*(value|version|path)\s*\}\}/g;

/** The `{{ … }}` in a template that are not one of its placeholders (a typo, another tool's syntax). */
export function unknownPlaceholders(template: string): string[] {
  return [...template.matchAll(/\{\{[^}]*\}\}/g)]
    .map((match) => match[0])
    .filter((candidate) => candidate.replace(placeholder, "") !== "");
}

export function renderSecret(
  template: string | null,
  secret: { readonly path: string; readonly version: number; readonly value: Uint8Array },
): Uint8Array {
  if (template === null) return secret.value;
  const text = template.replace(placeholder, (_match, name: string) => {
    if (name === "value") return Buffer.from(secret.value).toString("utf8");
    if (name === "version") return String(secret.version);
    return secret.path;
  });
  return Buffer.from(text, "utf8");
}

/** Replaces `file` with `content` atomically, with `mode`. */
export function writeFileAtomically(file: string, content: Uint8Array, mode: number): void {
  const temporary = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  let descriptor: number;
  try {
    descriptor = openSync(temporary, "w", mode);
  } catch (error) {
    // Said of the file asked for, not of the temporary one beside it.
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? `its directory ${dirname(file)} does not exist`
        : code === "EACCES"
          ? `${dirname(file)} may not be written to`
          : (error as Error).message;
    throw new Error(`cannot write ${file}: ${why}`, { cause: error });
  }
  try {
    // The mode exactly, whatever the umask.
    fchmodSync(descriptor, mode);
    // A write may take only part (a disk filling up): go on until all of it is written or the
    // next write fails, never rename a file cut short into place.
    for (let written = 0; written < content.length; )
      written += writeSync(descriptor, content, written, content.length - written);
    fsyncSync(descriptor);
  } catch (error) {
    closeSync(descriptor);
    rmSync(temporary, { force: true });
    throw error;
  }
  closeSync(descriptor);
  renameSync(temporary, file);
  // The directory entry too, so the rename survives a crash.
  const directory = openSync(dirname(file), "r");
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
}
