// One line per problem a schema found in a YAML document (a node's config, the agent's, a chaos
// experiment): where, and what is wrong. A field left out says so in YAML's words: zod's own
// message ("Invalid input: expected string, received undefined") reads like a type mistake.

import type { z } from "zod";

const yamlKinds: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
};

/** Validates `document`; the problems, one line each ("path: what is wrong"), or the data. */
export function checkDocument<T>(
  schema: z.ZodType<T>,
  document: unknown,
): { readonly data: T; readonly problems: null } | { readonly data: null; readonly problems: string[] } {
  // reportInput: to tell a missing field from a wrong one (the input is never printed).
  const result = schema.safeParse(document, { reportInput: true });
  if (result.success) return { data: result.data, problems: null };
  return { data: null, problems: result.error.issues.map(describeIssue) };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length === 0 ? "(top)" : issue.path.join(".");
  if (issue.code === "invalid_type" && issue.input === undefined)
    return `${where}: missing (${yamlKinds[issue.expected] ?? issue.expected} is required)`;
  return `${where}: ${issue.message}`;
}
