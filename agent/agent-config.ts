// The agent's config, YAML validated with zod (every problem reported at once, naming its field):
// which secrets to write to which files, how, what to run when they change, where to serve health
// and metrics. The cluster connection comes from the same environment variables as the CLI
// (STRONGROOM_ADDR, …, STRONGROOM_TOKEN) unless the config names it.
//
//   secrets:
//     - path: app/db
//       file: /run/secrets/db-password          # written atomically, mode 0600 unless `mode`
//     - path: app/db
//       file: /run/app/db.env
//       template: "DB_PASSWORD={{ value }}\n"   # {{ value }}, {{ version }}, {{ path }}
//   reload: { command: [systemctl, reload, app], timeoutMs: 30000 }
//   http: 127.0.0.1:8300                        # GET /v1/agent/health, GET /metrics
//   refreshIntervalMs: 60000                    # a re-read besides the watch

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { checkDocument } from "../server/schema-problems.js";
import { validatePath } from "../storage/state/limits.js";
import { unknownPlaceholders } from "./render.js";

const address = z.string().regex(/^[^\s:]+:\d{1,5}$/, "must be host:port");

const agentConfigSchema = z.strictObject({
  cluster: z
    .strictObject({
      endpoints: z.array(address).min(1),
      caFile: z.string().min(1),
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
      /** A file holding the token (re-read when it changes, so a rotated token is picked up). */
      tokenFile: z.string().min(1).optional(),
    })
    .optional(),
  secrets: z
    .array(
      z.strictObject({
        // The cluster's own rule (a path it would refuse could never be read nor watched).
        path: z.string().superRefine((path, context) => {
          try {
            validatePath(path);
          } catch (error) {
            context.addIssue({ code: "custom", message: (error as Error).message });
          }
        }),
        file: z.string().min(1),
        template: z
          .string()
          .max(64 * 1024)
          .superRefine((template, context) => {
            // A misspelt placeholder would be written into the file as it is, silently.
            for (const unknown of unknownPlaceholders(template)) {
              context.addIssue({
                code: "custom",
                message: `unknown placeholder ${unknown} (known: {{ value }}, {{ version }}, {{ path }})`,
              });
            }
          })
          .optional(),
        /** File mode, octal as a string ("0640") or a number; 0600 by default. */
        mode: z
          .union([z.number().int(), z.string().regex(/^0?[0-7]{3}$/, "must be an octal mode such as 0600")])
          .optional(),
      }),
    )
    .min(1)
    .max(1000),
  reload: z
    .strictObject({
      command: z.array(z.string().min(1)).min(1),
      timeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    })
    .optional(),
  http: address.optional(),
  refreshIntervalMs: z.number().int().min(1000).default(60_000),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;

export interface AgentSecret {
  readonly path: string;
  readonly file: string;
  readonly template: string | null;
  readonly mode: number;
}

export class AgentConfigError extends Error {
  override readonly name = "AgentConfigError";
}

/** Reads and validates an agent config; relative files are taken from the config's directory. */
export function loadAgentConfig(file: string): { config: AgentConfig; secrets: AgentSecret[] } {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(file, "utf8"));
  } catch (error) {
    throw new AgentConfigError(`${file}: ${(error as Error).message}`);
  }
  const { data: config, problems } = checkDocument(agentConfigSchema, document);
  if (problems !== null)
    throw new AgentConfigError(
      `${file} has ${problems.length} problem(s):\n${problems.map((problem) => `  - ${problem}`).join("\n")}`,
    );
  const base = dirname(resolve(file));
  const files = new Set<string>();
  const secrets = config.secrets.map((secret, position) => {
    const target = resolve(base, secret.file);
    if (files.has(target))
      throw new AgentConfigError(`${file}: secrets.${position}.file: ${target} is written twice`);
    files.add(target);
    return {
      path: secret.path,
      file: target,
      template: secret.template ?? null,
      mode: typeof secret.mode === "string" ? Number.parseInt(secret.mode, 8) : (secret.mode ?? 0o600),
    };
  });
  return { config, secrets };
}
