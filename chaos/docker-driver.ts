// The `docker` cluster driver: each node a container of deploy/Dockerfile's image on the host
// network, at its own 127.0.0.x address, as the process driver's nodes are. The run's directory is
// mounted at the same path inside, so the configs, certificates, data and audit directories the
// harness writes and checks are the node's own. Faults go through Docker: SIGKILL is
// `docker kill` (tini, PID 1, dies and the kernel kills the node with it: no shutdown, no flush),
// a pause is `docker pause` (the cgroup freezer), and other signals (SIGTERM, the failpoints'
// SIGUSR2) reach the node through tini.
//
// Unlike the netns driver's, the nodes' listen ports need no reservation from the ephemeral range:
// on the host's loopback a connection to 127.0.0.x leaves from 127.0.0.1 (the source the kernel's
// loopback route gives), so no outgoing connection holds a port on a node's own address while the
// node is down (checked with a connection from Node to 127.0.0.101: it came from 127.0.0.1).

import { execFileSync } from "node:child_process";

export interface DockerDriverOptions {
  readonly image: string;
  /** The run's directory: mounted at the same path. */
  readonly directory: string;
  /** Distinguishes this run's containers from another's (the cluster's base port). */
  readonly runId: string;
  /** Environment variables the nodes need from the harness (their names; values pass through). */
  readonly environment: readonly string[];
}

export interface DockerDriver {
  /** The command a node's process runs: `docker run` of its container, in the foreground. */
  readonly launcher: (nodeIndex: number) => readonly string[];
  readonly signaller: (nodeIndex: number, signal: NodeJS.Signals) => void;
  /** Removes every container of this run (at the end, and any an earlier run left). */
  readonly removeAll: (size: number) => void;
}

export function dockerDriver(options: DockerDriverOptions): DockerDriver {
  const name = (index: number) => `strongroom-chaos-${options.runId}-n${index + 1}`;
  const docker = (args: readonly string[]) => {
    try {
      execFileSync("docker", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
    } catch (error) {
      const said = String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim();
      // A container already gone (it exited, or was killed) has nothing left to signal or remove;
      // any other failure is a fault the harness could not inject, and fails the run.
      if (/No such container|is not running|is not paused/.test(said)) return;
      throw new Error(`docker ${args.join(" ")}: ${said}`);
    }
  };
  return {
    launcher: (index) => {
      // A container of the same name left by a crash of the harness would refuse this one.
      docker(["rm", "--force", name(index)]);
      return [
        "docker",
        "run",
        "--rm",
        "--name",
        name(index),
        "--network",
        "host",
        // The harness writes the node's files as root (keys 0600): the node reads them as root.
        "--user",
        "0:0",
        "--read-only",
        "--tmpfs",
        "/tmp:size=16m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--volume",
        `${options.directory}:${options.directory}`,
        ...options.environment.flatMap((variable) => ["--env", variable]),
        options.image,
      ];
    },
    signaller: (index, signal) => {
      if (signal === "SIGSTOP") docker(["pause", name(index)]);
      else if (signal === "SIGCONT") docker(["unpause", name(index)]);
      else docker(["kill", "--signal", signal.replace(/^SIG/, ""), name(index)]);
    },
    removeAll: (size) => {
      for (let index = 0; index < size; index++) docker(["rm", "--force", name(index)]);
    },
  };
}
