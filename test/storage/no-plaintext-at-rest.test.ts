// No secret in the clear on disk. Secrets holding a unique marker are written the way a leader
// writes them — encrypted by the barrier, proposed as commands into the Raft log (SegmentLogStore),
// applied to the state machine — then every byte of both data directories and of the state
// machine's snapshot is scanned for the marker, raw and base64. A control run that stores the
// marker in the clear proves the scan would find it in the Raft log's segment files and through
// LevelDB's files (its log and its tables, after a reopen).

import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { Barrier, Keyring, wrapKeyring } from "../../storage/barrier/index.js";
import { SegmentLogStore } from "../../storage/raft-log/segment-log-store.js";
import { encodeCommand, SecretStateMachine } from "../../storage/state/index.js";

const root = mkdtempSync(join(tmpdir(), "strongroom-at-rest-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Every file under `directory`, recursively. */
function files(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

/**
 * A marker with a random part in which no four bytes repeat. LevelDB compresses its tables with
 * Snappy, which stores a repeated run of four or more bytes as a reference to the first: a marker
 * like `ab12cd34ab12ef56` is then never whole on disk, the control run's scan misses it (seen once
 * in CI) and the real run's scan would be weaker than it looks.
 */
function markerWithoutRepeats(prefix: string): string {
  for (;;) {
    const marker = `${prefix}-${randomBytes(8).toString("hex")}`;
    const windows = new Set<string>();
    for (let i = 0; i + 4 <= marker.length; i++) windows.add(marker.slice(i, i + 4));
    if (windows.size === marker.length - 3) return marker;
  }
}

/** The files that contain `marker` in the clear or in base64. */
function filesContaining(directories: string[], marker: string): string[] {
  const needles = [Buffer.from(marker), Buffer.from(Buffer.from(marker).toString("base64").slice(0, 16))];
  return directories.flatMap(files).filter((file) => {
    const content = readFileSync(file);
    return needles.some((needle) => content.includes(needle));
  });
}

async function writeSecrets(directory: string, marker: string, encrypt: boolean): Promise<void> {
  const barrier = new Barrier();
  const keyring = Keyring.create(0);
  barrier.unseal(keyring);
  const log = await SegmentLogStore.open(join(directory, "raft-log"));
  const state = await SecretStateMachine.open(join(directory, "state"));
  const rootKey = new Uint8Array(randomBytes(32));
  for (let i = 1; i <= 50; i++) {
    const path = `tenant/app${i % 5}/secret${i}`;
    const value = new TextEncoder().encode(`password=${marker}-${i}`);
    // The control run stores the bytes as they are: what a store without a barrier would do. The
    // state machine takes them (a version byte of 1 and the overhead's length, as a ciphertext).
    const ciphertext = encrypt
      ? barrier.encrypt(path, value)
      : new Uint8Array([1, ...new Uint8Array(32), ...value]);
    const data = encodeCommand({ op: "kv.put", path, ciphertext, cas: null, at: i });
    await log.append([{ index: i, term: 1, type: "normal", data }], { term: 1, vote: null, commit: i });
    // A write the state machine refused would leave nothing there to scan.
    expect(await state.apply(i, data)).toMatchObject({ ok: true });
  }
  await log.saveSnapshot({
    meta: { index: 50, term: 1, membership: { voters: ["n1"], learners: [] } },
    data: wrapKeyring(keyring, rootKey),
  });
  await state.flush();
  // The state machine's snapshot, as it would be stored and sent to another node, is scanned too.
  writeFileSync(join(directory, "state-machine.snapshot"), await state.snapshot());
  await Promise.all([log.close(), state.close()]);
  // Reopen and close: LevelDB replays its log into table files, so both kinds of file are scanned.
  await (await SecretStateMachine.open(join(directory, "state"))).close();
}

it("the control run's plaintext marker is found by the scan (so the scan can fail)", async () => {
  const marker = markerWithoutRepeats("CONTROL");
  const directory = join(root, "control");
  await writeSecrets(directory, marker, false);
  // In both stores: the Raft log's segment files and the state machine's LevelDB files.
  expect(filesContaining([join(directory, "raft-log")], marker).length).toBeGreaterThan(0);
  expect(filesContaining([join(directory, "state")], marker).length).toBeGreaterThan(0);
});

it("secrets written through the barrier leave no plaintext in the Raft log or the state machine", async () => {
  const marker = markerWithoutRepeats("MARKER");
  const directory = join(root, "encrypted");
  await writeSecrets(directory, marker, true);
  expect(files(directory).length).toBeGreaterThan(4);
  expect(filesContaining([directory], marker)).toEqual([]);
});
