// CPU time and resident memory of a process, from Linux's /proc: what each server process (and the
// load generator itself) costs during a benchmark run; how busy the whole machine was, and how
// long a process's main thread waited for a core, which say whether a run was bound by the CPU;
// and how often a process's threads were switched onto a core, which says how many wake-ups its
// work took (each one a price the kernel charges, high on this VM: docs/performance.md).

import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on every Linux we run on). */
const ticksPerSecond = 100;

/** CPU seconds (user + system) the process has used so far, its threads included. */
export function cpuSeconds(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name is in parentheses and may hold spaces: count fields after its closing one.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** Resident memory, in MiB. */
export function rssMiB(pid: number | "self"): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match === null ? 0 : Number(match[1]) / 1024;
}

/** The machine's CPU time so far, in clock ticks summed over its cores. */
export interface MachineTicks {
  /** Neither idle nor idle waiting for I/O: every process's time and the kernel's own. */
  readonly busy: number;
  readonly total: number;
}

export function machineTicks(): MachineTicks {
  // The first line of /proc/stat: "cpu  user nice system idle iowait irq softirq steal ...".
  // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const [label, ...fields] = line.trim().split(/\s+/);
  if (label !== "cpu" || fields.length < 8)
    throw new Error(`/proc/stat begins "${line}", not the cpu totals`);
  const ticks = fields.slice(0, 8).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: total - idle, total };
}

/** The share of `after - before` the machine's cores were busy, 0 to 1. */
export function busyShare(before: MachineTicks, after: MachineTicks): number {
  const total = after.total - before.total;
  return total <= 0 ? 0 : (after.busy - before.busy) / total;
}

/** Seconds a thread has run on a core, and waited runnable for one, so far. */
export interface ThreadSchedule {
  readonly runSeconds: number;
  readonly waitSeconds: number;
}

/**
 * The schedule of a process's main thread (for a Node process, its event loop): /proc/<pid>/schedstat
 * describes the thread whose id is the process's, not the process's other threads. Time spent
 * waiting is time it could have run: a loop that waits as long as it runs is held up by the other
 * processes and threads on its cores, not by its own work.
 */
export function mainThreadSchedule(pid: number): ThreadSchedule {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
  if (!Number.isFinite(run) || !Number.isFinite(wait))
    throw new Error(`/proc/${pid}/schedstat does not hold a run and a wait time`);
  return { runSeconds: (run as number) / 1e9, waitSeconds: (wait as number) / 1e9 };
}

/**
 * The context switches of every thread of process `pid` so far: voluntary (a thread that waited
 * for something, then woke) and involuntary (a thread taken off its core), summed over
 * /proc/<pid>/task/<tid>/status. A thread that ended takes its count with it, so read a process
 * whose threads stay (a server's), and compare two readings.
 */
export function contextSwitches(pid: number): number {
  let switches = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
    } catch {
      continue; // The thread ended since the directory was read.
    }
    const voluntary = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
    const involuntary = /^nonvoluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
    if (voluntary === null || involuntary === null)
      throw new Error(`/proc/${pid}/task/${tid}/status has no context switch counts`);
    switches += Number(voluntary[1]) + Number(involuntary[1]);
  }
  return switches;
}
