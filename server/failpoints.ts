// Test-only failpoints: named places inside the node where the chaos harness can make it crash
// (SIGKILL to itself: no flush, no shutdown, as a power cut) or stall (a slow disk), the way etcd's
// gofail crash points work. Switched on only by STRONGROOM_TEST_FAILPOINTS=<control file>, announced
// in the node's log; without it `failpointsFromEnv` returns null and no point costs anything.
//
// The control file is JSON, `{ "<point>": "crash" | { "sleepMs": N } }`; an empty object (or a
// missing file) disarms every point. The node reads it at start and again on SIGUSR2, so the
// harness arms a point in a running node by writing the file and sending the signal.

import { readFileSync } from "node:fs";
import { z } from "zod";
import { type RaftFailpoint, raftFailpoints } from "../raft/node/index.js";

const actionSchema = z.union([
  z.literal("crash"),
  z.strictObject({ sleepMs: z.number().int().min(1).max(60_000) }),
]);
const controlSchema = z.partialRecord(z.enum(raftFailpoints), actionSchema);
export type FailpointControl = z.infer<typeof controlSchema>;

/** What the node logs each time it has read its control file: the harness waits for it. */
export const failpointsReadMessage = "TEST FAILPOINTS ARE ON: this node may crash or stall on purpose";

export class Failpoints {
  private armed: FailpointControl = {};

  constructor(readonly controlFile: string) {}

  /** Rereads the control file; a file that does not parse disarms everything and says why. */
  reload(): string | null {
    let text = "{}";
    try {
      text = readFileSync(this.controlFile, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    let document: unknown = {};
    try {
      if (text.trim() !== "") document = JSON.parse(text);
    } catch (error) {
      this.armed = {};
      return `${this.controlFile}: ${(error as Error).message}`;
    }
    const parsed = controlSchema.safeParse(document);
    if (!parsed.success) {
      this.armed = {};
      return `${this.controlFile}: ${parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ")}`;
    }
    this.armed = parsed.data;
    return null;
  }

  describe(): string {
    return JSON.stringify(this.armed);
  }

  /** Called at the point: nothing, a crash (this process dies at once), or a sleep. */
  readonly hit = (point: RaftFailpoint): Promise<void> | undefined => {
    const action = this.armed[point];
    if (action === undefined) return undefined;
    if (action === "crash") process.kill(process.pid, "SIGKILL");
    else return new Promise((resolve) => setTimeout(resolve, action.sleepMs));
    return undefined;
  };
}

export function failpointsFromEnv(env: NodeJS.ProcessEnv = process.env): Failpoints | null {
  const file = env.STRONGROOM_TEST_FAILPOINTS;
  return file === undefined || file === "" ? null : new Failpoints(file);
}
