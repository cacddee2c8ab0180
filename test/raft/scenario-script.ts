// Scenario scripts with golden transcripts, in the manner of etcd-io/raft's interaction tests.
// A script is a list of commands ("> campaign n1"); running it prints what happened under each
// command (messages delivered, states, errors). The file holds both: a change of behaviour shows
// up as a readable diff of the transcript. Regenerate after an intended change with
//   UPDATE_GOLDEN=1 npx vitest run test/raft/scenario-scripts.test.ts
//
// Commands:
//   cluster N [learners=K] [preVote=false] [checkQuorum=false] [messageBytesMax=B] ...
//   campaign ID | tick ID [N] | tick-all [N] | deliver | stabilize | settle [N]
//   propose ID VALUE | read ID CONTEXT | transfer ID TARGET | change ID addVoter|addLearner|removeNode NODE
//   isolate ID | partition A,B C,D | heal | drop | crash ID | restart ID | add-node ID | snapshot ID [RETAIN]
//   status | applied | read-states ID

import { describeMessage, emptyState, RaftError } from "../../raft/core/index.js";
import { type ConfigOverrides, ScenarioCluster } from "./scenario-cluster.js";

export function runScenarioScript(script: string): string {
  const out: string[] = [];
  let cluster: ScenarioCluster | null = null;
  const need = (): ScenarioCluster => {
    if (cluster === null) throw new Error("the script must start with 'cluster N'");
    return cluster;
  };
  const printMessage = (message: Parameters<typeof describeMessage>[0]) =>
    out.push(`  ${message.from}→${message.to} ${describeMessage(message)}`);
  const attempt = (action: () => string | undefined): void => {
    try {
      const result = action();
      if (result !== undefined) out.push(`  ${result}`);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
      out.push(`  error ${error.code}: ${error.message}`);
    }
  };

  for (const raw of script.split("\n")) {
    if (!raw.startsWith("> ")) {
      if (raw.startsWith("#") || (raw.trim() === "" && out.at(-1) !== "")) out.push(raw);
      continue;
    }
    out.push(raw);
    const [command, ...args] = raw.slice(2).trim().split(/\s+/);
    const arg = (i: number): string => {
      const value = args[i];
      if (value === undefined) throw new Error(`${raw}: argument ${i + 1} is missing`);
      return value;
    };
    const count = (i: number, fallback: number) => (args[i] === undefined ? fallback : Number(args[i]));
    switch (command) {
      case "cluster": {
        const options: { learners?: number; config: ConfigOverrides } = { config: {} };
        for (const pair of args.slice(1)) {
          const [key, value] = pair.split("=");
          if (key === "learners") options.learners = Number(value);
          else if (key !== undefined)
            (options.config as Record<string, unknown>)[key] =
              value === "true" ? true : value === "false" ? false : Number(value);
        }
        cluster = ScenarioCluster.create(Number(arg(0)), options);
        cluster.onDeliver = printMessage;
        break;
      }
      case "campaign":
        need().campaign(arg(0));
        break;
      case "tick":
        need().tick(arg(0), count(1, 1));
        break;
      case "tick-all":
        need().tickAll(count(0, 1));
        break;
      case "deliver":
        need().deliverQueued();
        break;
      case "stabilize":
        need().stabilize();
        break;
      case "settle":
        need().settle(count(0, 5));
        break;
      case "drop":
        out.push(`  dropped ${need().dropQueued().length} messages`);
        break;
      case "propose":
        attempt(() => {
          const position = need().propose(arg(0), arg(1));
          return `proposed at ${position.index} (term ${position.term})`;
        });
        break;
      case "read":
        attempt(() => {
          need().readIndex(arg(0), arg(1));
          return undefined;
        });
        break;
      case "transfer":
        attempt(() => {
          need().core(arg(0)).transferLeadership(arg(1));
          need().process(arg(0));
          return undefined;
        });
        break;
      case "change":
        attempt(() => {
          const kind = arg(1) as "addVoter" | "addLearner" | "removeNode";
          const position = need()
            .core(arg(0))
            .proposeMembershipChange({ kind, node: arg(2) });
          need().process(arg(0));
          return `proposed ${kind} ${arg(2)} at ${position.index}`;
        });
        break;
      case "isolate":
        need().isolate(arg(0));
        break;
      case "partition":
        need().partition(...args.map((group) => group.split(",")));
        break;
      case "heal":
        need().heal();
        break;
      case "crash":
        need().crash(arg(0));
        break;
      case "restart":
        need().restart(arg(0));
        break;
      case "add-node":
        need().addNode(arg(0), emptyState());
        break;
      case "snapshot": {
        const snapshot = need().snapshot(arg(0), count(1, 0));
        out.push(
          `  snapshot at ${snapshot.meta.index} (term ${snapshot.meta.term}), ${snapshot.data.length} bytes`,
        );
        break;
      }
      case "status":
        for (const node of need().nodes.values()) {
          if (node.core === null) {
            out.push(`  ${node.id} down`);
            continue;
          }
          const status = node.core.status();
          out.push(
            `  ${node.id} ${status.role} term ${status.term} leader ${status.leader ?? "-"} commit ${status.commit} ` +
              `applied ${status.applied} log ${status.firstIndex > status.lastIndex ? `empty after ${status.lastIndex}` : `${status.firstIndex}..${status.lastIndex}`} voters ${status.membership.voters.join(",")}` +
              (status.membership.learners.length > 0
                ? ` learners ${status.membership.learners.join(",")}`
                : ""),
          );
        }
        break;
      case "applied":
        for (const node of need().nodes.values()) out.push(`  ${node.id} [${node.applied.join(", ")}]`);
        break;
      case "read-states":
        out.push(
          `  ${arg(0)} ${
            need()
              .node(arg(0))
              .readStates.map((r) => `${r.context}@${r.index}`)
              .join(" ") || "none"
          }`,
        );
        break;
      default:
        throw new Error(`unknown scenario command: ${raw}`);
    }
  }
  return `${out.join("\n").trimEnd()}\n`;
}
