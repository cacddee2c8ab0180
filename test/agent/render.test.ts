// writeFileAtomically, what the agent and `certs issue --out` write files with: the new content
// whole, with the mode asked for whatever the file it replaces had, and an error that names the
// file asked for when it cannot be written.

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { writeFileAtomically } from "../../agent/render.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-render-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

it("replaces a file whole, with the mode asked for, not the old file's, and leaves nothing beside it", () => {
  const file = join(root, "key.pem");
  writeFileSync(file, "old");
  chmodSync(file, 0o644);
  writeFileAtomically(file, Buffer.from("new"), 0o600);
  expect(readFileSync(file, "utf8")).toBe("new");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(readdirSync(root)).toEqual(["key.pem"]);
});

it("names the file asked for, not its temporary one, when its directory does not exist", () => {
  const file = join(root, "absent", "db");
  expect(() => writeFileAtomically(file, Buffer.from("x"), 0o600)).toThrow(
    `cannot write ${file}: its directory ${join(root, "absent")} does not exist`,
  );
});

it("leaves the old file whole when the disk fills up part-way through the new one", () => {
  // A small tmpfs (the test runs as root, as CI does): a write of more than it holds takes part,
  // and a file cut short must never be renamed over the old one.
  const small = join(root, "small");
  mkdirSync(small);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", small]);
  try {
    const file = join(small, "db.env");
    writeFileSync(file, "DB_PASSWORD=old\n");
    expect(() => writeFileAtomically(file, Buffer.alloc(256 * 1024, "x"), 0o600)).toThrow(/ENOSPC/);
    expect(readFileSync(file, "utf8")).toBe("DB_PASSWORD=old\n");
    expect(readdirSync(small)).toEqual(["db.env"]);
  } finally {
    execFileSync("umount", ["-l", small]);
  }
});
