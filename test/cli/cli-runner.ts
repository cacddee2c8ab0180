// Runs the bundled `strongroom` command in a child process as an operator would: the given
// environment on top of the test's, the given text on stdin, and the exit code and both outputs
// collected.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(
  cli: string,
  args: readonly string[],
  input: string,
  env: Readonly<Record<string, string>>,
): Promise<CliResult> {
  return runNode([cli, ...args], input, env);
}

/** Runs this Node with `args` (a script and its arguments), as runCli does. */
export function runNode(
  args: readonly string[],
  input: string,
  env: Readonly<Record<string, string>>,
): Promise<CliResult> {
  const running = startNode(args, env);
  running.child.stdin.end(input);
  return running.exited;
}

/** A child still running: its outputs so far, and its result once it exits. */
export interface RunningNode {
  readonly child: ChildProcessWithoutNullStreams;
  readonly output: () => { readonly stdout: string; readonly stderr: string };
  readonly exited: Promise<CliResult>;
}

/** Starts this Node with `args`, collecting both outputs, for a test that acts while it runs. */
export function startNode(args: readonly string[], env: Readonly<Record<string, string>> = {}): RunningNode {
  return startProgram(process.execPath, args, env);
}

/** Starts `program` with `args` as startNode starts Node. */
export function startProgram(
  program: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): RunningNode {
  const child = spawn(program, args, {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  // "close", not "exit": a process may exit before its pipes are read to the end, and a result
  // taken at "exit" could miss the last of its output.
  const exited = new Promise<CliResult>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr })),
  );
  return { child, output: () => ({ stdout, stderr }), exited };
}
