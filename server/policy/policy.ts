// Policies: named lists of path rules, written in YAML or JSON, validated with one clear error per
// problem, and evaluated by a pure function (no I/O, no clock): deny by default; an explicit
// `deny` on any matching rule wins; otherwise the most specific matching pattern decides, with the
// capabilities of every attached policy's rule for that same pattern combined.
//
//   name: app-readers
//   tenant: acme              # optional: every rule must lie under "acme/"
//   rules:
//     - path: acme/app/*
//       capabilities: [read, list]
//     - path: acme/app/admin/*
//       capabilities: [deny]
//
// A tenant's policies can only name paths under the tenant's prefix, so an identity bound to them
// can never match, read or list another tenant's paths - not even their names.

import { parse as parseYaml } from "yaml";
import {
  compareSpecificity,
  matchesPath,
  type PathPattern,
  PolicyError,
  parsePathPattern,
} from "./path-pattern.js";

export const capabilities = [
  "create",
  "read",
  "update",
  "delete",
  "list",
  "destroy",
  "sudo",
  "deny",
] as const;
export type Capability = (typeof capabilities)[number];

export interface PolicyRule {
  readonly pattern: PathPattern;
  readonly capabilities: ReadonlySet<Capability>;
}

export interface Policy {
  readonly name: string;
  readonly tenant: string | null;
  readonly rules: readonly PolicyRule[];
}

export interface Decision {
  readonly allowed: boolean;
  /** Why, in words for the audit log and the PERMISSION_DENIED message (names policy and pattern). */
  readonly reason: string;
}

const namePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const nameRule = "1 to 64 lower-case letters, digits, '.', '_' or '-'";
const rulesMax = 256;

/** Throws a PolicyError naming the rule when `name` cannot be a policy's name. */
export function validatePolicyName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !namePattern.test(name))
    throw new PolicyError(`a policy name is ${nameRule}: got ${JSON.stringify(String(name).slice(0, 80))}`);
}

/**
 * Parses and validates a policy document (YAML, or JSON, which YAML reads too). `writtenAs`, the
 * name a write asks for, only words the message for a document without a name.
 */
export function parsePolicy(source: string, writtenAs?: string): Policy {
  let document: unknown;
  try {
    document = parseYaml(source);
  } catch (error) {
    throw new PolicyError(`the policy is not valid YAML or JSON: ${(error as Error).message}`);
  }
  return validatePolicy(document, writtenAs);
}

export function validatePolicy(document: unknown, writtenAs?: string): Policy {
  const problems: string[] = [];
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new PolicyError("a policy is a map with name, rules and optionally tenant");
  }
  const { name, tenant, rules, ...unknown } = document as Record<string, unknown>;
  for (const key of Object.keys(unknown)) problems.push(`unknown field "${key}"`);
  if (name === undefined) {
    // The name is part of the document (policy read gives it back whole): say what to add.
    const hint = writtenAs !== undefined && namePattern.test(writtenAs) ? `: add "name: ${writtenAs}"` : "";
    problems.push(`name: missing, the document names its policy${hint}`);
  } else if (typeof name !== "string" || !namePattern.test(name)) {
    problems.push(`name: ${nameRule}`);
  }
  if (tenant !== undefined && (typeof tenant !== "string" || !/^[A-Za-z0-9._-]+$/.test(tenant))) {
    problems.push("tenant: a single path segment (letters, digits, '.', '_', '-')");
  }
  const parsedRules: PolicyRule[] = [];
  if (!Array.isArray(rules) || rules.length === 0) {
    problems.push("rules: a non-empty list");
  } else if (rules.length > rulesMax) {
    problems.push(`rules: at most ${rulesMax}`);
  } else {
    const seen = new Set<string>();
    rules.forEach((rule: unknown, position) => {
      const where = `rules[${position}]`;
      if (typeof rule !== "object" || rule === null) {
        problems.push(`${where}: a map with path and capabilities`);
        return;
      }
      const { path, capabilities: granted, ...extra } = rule as Record<string, unknown>;
      for (const key of Object.keys(extra)) problems.push(`${where}: unknown field "${key}"`);
      let pattern: PathPattern | null = null;
      try {
        pattern = parsePathPattern(path as string);
      } catch (error) {
        problems.push(`${where}.path: ${(error as Error).message}`);
      }
      if (pattern !== null) {
        if (seen.has(pattern.text))
          problems.push(`${where}.path: ${pattern.text} appears twice (merge the rules)`);
        seen.add(pattern.text);
        if (typeof tenant === "string" && !pattern.text.startsWith(`${tenant}/`)) {
          problems.push(`${where}.path: ${pattern.text} is outside the tenant's prefix ${tenant}/`);
        }
      }
      const set = new Set<Capability>();
      if (!Array.isArray(granted) || granted.length === 0) {
        problems.push(`${where}.capabilities: a non-empty list`);
      } else {
        for (const capability of granted) {
          if (!(capabilities as readonly unknown[]).includes(capability)) {
            problems.push(
              `${where}.capabilities: unknown capability ${JSON.stringify(capability)} (known: ${capabilities.join(", ")})`,
            );
          } else set.add(capability as Capability);
        }
        if (set.has("deny") && set.size > 1)
          problems.push(`${where}.capabilities: deny cannot be combined with others`);
      }
      if (pattern !== null) parsedRules.push({ pattern, capabilities: set });
    });
  }
  if (problems.length > 0) {
    throw new PolicyError(
      `the policy${typeof name === "string" ? ` ${name}` : ""} has problems:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  return { name: name as string, tenant: typeof tenant === "string" ? tenant : null, rules: parsedRules };
}

/** Decides `capability` on `path` for an identity bound to `policies`. Pure. */
export function authorize(policies: readonly Policy[], path: string, capability: Capability): Decision {
  const matching: { policy: string; rule: PolicyRule }[] = [];
  for (const policy of policies) {
    for (const rule of policy.rules) {
      if (matchesPath(rule.pattern, path)) matching.push({ policy: policy.name, rule });
    }
  }
  if (matching.length === 0) return { allowed: false, reason: `no policy grants anything on ${path}` };
  const denial = matching.find(({ rule }) => rule.capabilities.has("deny"));
  if (denial !== undefined) {
    return {
      allowed: false,
      reason: `${path} is denied by policy ${denial.policy} (${denial.rule.pattern.text})`,
    };
  }
  let best = matching[0] as { policy: string; rule: PolicyRule };
  for (const candidate of matching) {
    if (compareSpecificity(candidate.rule.pattern, best.rule.pattern) > 0) best = candidate;
  }
  const deciding = matching.filter(({ rule }) => rule.pattern.text === best.rule.pattern.text);
  const granted = deciding.find(({ rule }) => rule.capabilities.has(capability));
  if (granted !== undefined) {
    return {
      allowed: true,
      reason: `${capability} on ${path} granted by policy ${granted.policy} (${granted.rule.pattern.text})`,
    };
  }
  return {
    allowed: false,
    reason: `${capability} on ${path} is not granted by ${best.rule.pattern.text}, the most specific rule (policies ${[...new Set(deciding.map(({ policy }) => policy))].join(", ")})`,
  };
}

export { PolicyError };
