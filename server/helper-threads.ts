// The scheduling policy of a node process's helper threads: every thread but the event loop's
// (libuv's thread pool, which makes the durable audit and Raft log writes; V8's compiler and GC
// helpers; LevelDB's compactions). Linux's default lets a thread that wakes take the core from
// the one running; on a machine with fewer cores than busy threads, the event loop is preempted
// each time it hands a write to the pool (about a thousand times a second per node under 64
// writing clients here), and pays the switch and its cold caches. `SCHED_BATCH` keeps a helper's
// share of the CPU (its nice value is unchanged) but does not preempt on wake-up: it runs when a
// core is free or the running thread's slice ends (docs/performance.md, the thirty-seventh
// session). Node has no call for it; util-linux's `chrt` (in every Debian) sets it per thread.
// Threads start with their creator's policy, so helpers made later by a helper are batch too;
// the few a node makes later from its event loop are found by the next pass.

import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** `SCHED_BATCH` in `sched.h`, and field 41 (`policy`) of `/proc/<pid>/task/<tid>/stat`. */
const schedBatch = 3;
const statPolicyField = 41;

/** The scheduling policy of each thread of process `pid` (this one by default), by thread id. */
export function threadPolicies(pid: number | "self" = "self"): Map<number, number> {
  const policies = new Map<number, number>();
  for (const name of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${name}/stat`, "utf8");
    } catch {
      continue; // The thread ended since the directory was read.
    }
    // The fields after the command name, which is in parentheses and may hold spaces: field 3 on.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    policies.set(Number(name), Number(fields[statPolicyField - 3]));
  }
  return policies;
}

/**
 * One shell for a pass, running `chrt` once per thread: every process a node starts is a fork of
 * it, 10-17 ms of its CPU each at a node's size on this VM, and the first pass finds ten
 * threads (docs/performance.md, fifty-second session). Exits with the last failure's status.
 */
const passScript = 'failed=0; for tid do chrt --batch --pid 0 "$tid" || failed=$?; done; exit $failed';
/** What a POSIX shell exits with when a command is not found. */
const commandNotFound = 127;

/**
 * Puts every helper thread not yet batch under `SCHED_BATCH`. Resolves with the number of threads
 * changed; rejects with `chrt`'s error (missing, or refused) naming the threads left unchanged.
 */
async function batchHelperThreads(): Promise<number> {
  const helpers = [...threadPolicies()]
    .filter(([tid, policy]) => tid !== process.pid && policy !== schedBatch)
    .map(([tid]) => tid);
  if (helpers.length === 0) return 0;
  const failure = await runPass(helpers);
  // A thread that ended meanwhile is not a failure.
  const after = threadPolicies();
  const unchanged = helpers.filter((tid) => after.has(tid) && after.get(tid) !== schedBatch);
  if (unchanged.length > 0)
    throw new Error(
      `chrt --batch on thread${unchanged.length > 1 ? "s" : ""} ${unchanged.join(", ")}: ${failure?.message ?? "policy unchanged"}`,
    );
  return helpers.filter((tid) => after.has(tid)).length;
}

/** Runs the pass's shell over `tids`; resolves with its failure, or null. */
function runPass(tids: readonly number[]): Promise<Error | null> {
  return new Promise((resolve) => {
    execFile(
      "/bin/sh",
      ["-c", passScript, "sh", ...tids.map(String)],
      { timeout: 5000 },
      (error, _stdout, stderr) => {
        if (error === null) resolve(null);
        else if (error.code === commandNotFound)
          resolve(new Error("chrt is not on PATH (util-linux; Debian: apt-get install util-linux)"));
        else resolve(new Error(stderr.trim() || error.message));
      },
    );
  });
}

/** Passes at start and every `intervalMs` after (for helpers made later), until the returned stop. */
export function keepHelperThreadsBatch(
  intervalMs: number,
  onPass: (result: { changed: number } | { error: Error }) => void,
): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const pass = () => {
    batchHelperThreads().then(
      (changed) => {
        if (stopped) return;
        onPass({ changed });
        timer = setTimeout(pass, intervalMs).unref();
      },
      // One report and no more passes: what refused once (no chrt, a policy forbidden by a
      // seccomp profile) refuses again.
      (error: Error) => {
        if (!stopped) onPass({ error });
      },
    );
  };
  pass();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}
