// Every command's help, as `strongroom … --help` prints it: each command says what it does, and a
// default is shown once, as what it means ("its TTL"), never beside its placeholder ("(default: 0)")
// nor as an empty string.

import { Command } from "commander";
import { expect, it } from "vitest";
import { registerAccessCommands } from "../../cli/access-commands.js";
import { registerAgentCommand } from "../../cli/agent-command.js";
import { registerAuditCommands } from "../../cli/audit-command.js";
import { registerChaosCommand } from "../../cli/chaos-command.js";
import { registerClusterCommands } from "../../cli/cluster-commands.js";
import { registerClientCommands } from "../../cli/kv-commands.js";
import { registerLifecycleCommands } from "../../cli/lifecycle-commands.js";
import { registerPkiCommands } from "../../cli/pki-commands.js";

/** The commands registered as main.ts registers them, each with its full name. */
function commands(): [string, Command][] {
  const program = new Command("strongroom");
  for (const register of [
    registerClientCommands,
    registerAccessCommands,
    registerClusterCommands,
    registerPkiCommands,
    registerLifecycleCommands,
    registerAuditCommands,
    registerAgentCommand,
    registerChaosCommand,
  ])
    register(program);
  const all: [string, Command][] = [];
  const walk = (command: Command, prefix: string) => {
    for (const sub of command.commands) {
      const name = `${prefix} ${sub.name()}`.trim();
      all.push([name, sub]);
      walk(sub, name);
    }
  };
  walk(program, "");
  return all;
}

it("gives every command a description and shows each default once", () => {
  const all = commands();
  expect(all.length).toBeGreaterThan(50);
  expect(all.filter(([, command]) => command.description() === "").map(([name]) => name)).toEqual([]);
  const doubled = all.filter(([, command]) =>
    /\(default[: ][^)]*\) \(default:/.test(command.helpInformation().replace(/\s+/g, " ")),
  );
  expect(doubled.map(([name]) => name)).toEqual([]);
  // A duration's default in the units its flag takes ("10s", "its TTL"), never a bare number.
  const bare = all.filter(([, command]) =>
    /<duration>[^(]*\(default: \d+\)/.test(command.helpInformation().replace(/\s+/g, " ")),
  );
  expect(bare.map(([name]) => name)).toEqual([]);
  const empty = all.filter(([, command]) => command.helpInformation().includes('(default: "")'));
  expect(empty.map(([name]) => name)).toEqual([]);
});
