// Audit completeness on every node after a run: each node's trail (closed by a graceful stop, so it
// ends in a checkpoint) must verify - chain unbroken, checkpoints' MACs right with the cluster's
// audit key - and every request entry must have its response entry. The one allowance: a node the
// harness killed (SIGKILL, a crash point) may have requests that were in flight when it died; they
// are counted, not failed. A node never killed must have none.

import { readdirSync } from "node:fs";
import { join } from "node:path";
import { verifyAuditFiles } from "../server/audit/audit-verify.js";

export interface NodeAudit {
  readonly node: string;
  readonly entries: number;
  /** Chain problems: an edited, missing or reordered entry, a bad MAC, a lost response. */
  readonly problems: readonly string[];
  /** Requests without a response on a node that was killed while they were in flight. */
  readonly inFlightAtKill: number;
  readonly pass: boolean;
}

export function checkAuditTrail(
  node: string,
  directory: string,
  auditKey: Uint8Array,
  killed: boolean,
): NodeAudit {
  const files = readdirSync(directory)
    .filter((name) => /^audit-\d+\.jsonl$/.test(name))
    .sort()
    .map((name) => join(directory, name));
  const verification = verifyAuditFiles(files, auditKey);
  // The verifier reports a request without response as lost when the trail ends in a checkpoint;
  // for a killed node those are the calls it died with.
  const problems = verification.problems.filter(
    (problem) => !(killed && /^request \S+ has no response entry/.test(problem)),
  );
  const inFlightAtKill = killed ? verification.unanswered.length : 0;
  if (files.length === 0) problems.push("no audit file");
  return { node, entries: verification.entries, problems, inFlightAtKill, pass: problems.length === 0 };
}
