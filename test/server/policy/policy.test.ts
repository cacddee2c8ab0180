// The policy engine by table: what each pattern matches, which of several matching patterns is the
// most specific, every capability allowed, denied by default, and explicitly denied; tenancy; and
// the error a bad policy gets.

import { describe, expect, it } from "vitest";
import { compareSpecificity, matchesPath, parsePathPattern } from "../../../server/policy/path-pattern.js";
import {
  authorize,
  type Capability,
  capabilities,
  type Policy,
  parsePolicy,
  validatePolicy,
} from "../../../server/policy/policy.js";

describe("path patterns", () => {
  it.each([
    ["app/db", "app/db", true],
    ["app/db", "app/db/x", false],
    ["app/db", "app", false],
    ["app/+", "app/db", true],
    ["app/+", "app/db/x", false],
    ["app/+/config", "app/web/config", true],
    ["app/+/config", "app/web/other", false],
    ["+/db", "prod/db", true],
    ["app/*", "app/db", true],
    ["app/*", "app/db/x/y", true],
    ["app/*", "app", false],
    ["app/*", "application/x", false],
    ["app/d*", "app/db", true],
    ["app/d*", "app/dev/x", true],
    ["app/d*", "app/web", false],
    ["app*", "application/x", true],
    ["*", "anything/at/all", true],
    ["+/*", "a/b", true],
    ["+/*", "a", false],
    ["app/+/*", "app/x/y/z", true],
    ["app/+/*", "app/x", false],
  ])("%s matches %s: %s", (pattern, path, expected) => {
    expect(matchesPath(parsePathPattern(pattern), path)).toBe(expected);
  });

  it.each([
    ["app/*/x", /'\*' may only end a pattern/],
    ["app/a+b", /'\+' must be a whole segment/],
    ["app/+*", /'\+\*' is not a pattern: write '\+\/\*'/],
    ["/app", /does not start with '\/'/],
    ["app//x", /segment "" is empty/],
    ["app/ü", /has characters other than/],
    ["", /non-empty string/],
  ])("refuses %s", (pattern, message) => {
    expect(() => parsePathPattern(pattern)).toThrow(message);
  });

  it("orders patterns by Vault's priority rules", () => {
    const patterns = ["app/db/config", "app/+/x", "*", "app/db", "app/d*", "app/+", "app/db/*", "app/*"];
    const sorted = patterns
      .map(parsePathPattern)
      .sort(compareSpecificity)
      .map((pattern) => pattern.text);
    expect(sorted).toEqual([
      "*", // the first wildcard earliest
      "app/*", // wildcard at 4, ending in '*'
      "app/+", // wildcard at 4, shorter
      "app/+/x",
      "app/d*", // wildcard at 5
      "app/db", // no wildcard: as if at its end (6)
      "app/db/*", // wildcard at 7
      "app/db/config",
    ]);
    // An exact pattern beats a glob that matches the same path with its wildcard at the same place.
    expect(compareSpecificity(parsePathPattern("app/db"), parsePathPattern("app/db*"))).toBeGreaterThan(0);
  });
});

const policy = (name: string, rules: [string, Capability[]][], tenant?: string): Policy =>
  validatePolicy({
    name,
    ...(tenant === undefined ? {} : { tenant }),
    rules: rules.map(([path, caps]) => ({ path, capabilities: caps })),
  });

describe("authorize", () => {
  const readers = policy("readers", [
    ["app/*", ["read", "list"]],
    ["app/admin/*", ["deny"]],
    ["app/db", ["read", "update"]],
  ]);
  const writers = policy("writers", [["app/*", ["create", "update", "delete"]]]);

  it.each(capabilities.filter((capability) => capability !== "deny"))(
    "grants %s where a rule grants it, and only there",
    (capability) => {
      const only = policy("only", [["zone/x", [capability]]]);
      expect(authorize([only], "zone/x", capability).allowed).toBe(true);
      expect(authorize([only], "zone/y", capability)).toEqual({
        allowed: false,
        reason: "no policy grants anything on zone/y",
      });
      for (const other of capabilities.filter((c) => c !== capability && c !== "deny")) {
        expect(authorize([only], "zone/x", other).allowed).toBe(false);
      }
    },
  );

  it("denies by default, lets an explicit deny win, and otherwise takes the most specific rule", () => {
    expect(authorize([readers], "other/x", "read").allowed).toBe(false);
    expect(authorize([readers], "app/web", "read")).toEqual({
      allowed: true,
      reason: "read on app/web granted by policy readers (app/*)",
    });
    expect(authorize([readers, writers], "app/admin/root", "read")).toEqual({
      allowed: false,
      reason: "app/admin/root is denied by policy readers (app/admin/*)",
    });
    // app/db is more specific than app/*: it grants read and update, not list.
    expect(authorize([readers], "app/db", "update").allowed).toBe(true);
    expect(authorize([readers], "app/db", "list")).toEqual({
      allowed: false,
      reason: "list on app/db is not granted by app/db, the most specific rule (policies readers)",
    });
  });

  it("combines the capabilities of every attached policy's rule for the same pattern", () => {
    expect(authorize([readers], "app/web", "create").allowed).toBe(false);
    expect(authorize([readers, writers], "app/web", "create").allowed).toBe(true);
    expect(authorize([readers, writers], "app/web", "read").allowed).toBe(true);
    expect(authorize([], "app/web", "read").allowed).toBe(false);
  });

  it("keeps tenants apart: a tenant's policy cannot name, read or list another tenant's paths", () => {
    const acme = policy(
      "acme-admin",
      [["acme/*", ["create", "read", "update", "delete", "list", "destroy"]]],
      "acme",
    );
    expect(authorize([acme], "acme/db", "read").allowed).toBe(true);
    for (const capability of capabilities) {
      expect(authorize([acme], "globex/db", capability).allowed).toBe(false);
      expect(authorize([acme], "", capability).allowed).toBe(false);
    }
    expect(() => policy("sneaky", [["+/db", ["read"]]], "acme")).toThrow(
      /\+\/db is outside the tenant's prefix acme\//,
    );
    expect(() => policy("sneaky", [["*", ["list"]]], "acme")).toThrow(/outside the tenant's prefix/);
    expect(() => policy("sneaky", [["acmecorp/*", ["read"]]], "acme")).toThrow(/outside the tenant's prefix/);
  });
});

describe("policy documents", () => {
  it("reads YAML and JSON alike", () => {
    const yaml = parsePolicy("name: ops\nrules:\n  - path: app/*\n    capabilities: [read]\n");
    // A document without its name (as another system's policy files are): the write's name is the hint.
    expect(() => parsePolicy("rules:\n  - path: app/*\n    capabilities: [read]\n", "ops")).toThrow(
      'the policy has problems:\n  - name: missing, the document names its policy: add "name: ops"',
    );
    expect(() => parsePolicy("rules:\n  - path: app/*\n    capabilities: [read]\n")).toThrow(
      "the policy has problems:\n  - name: missing, the document names its policy",
    );
    const json = parsePolicy('{"name":"ops","rules":[{"path":"app/*","capabilities":["read"]}]}');
    expect(json).toEqual(yaml);
    expect(yaml.rules[0]?.capabilities).toEqual(new Set(["read"]));
  });

  it("reports every problem at once with where it is", () => {
    expect(() =>
      parsePolicy(`
name: Bad Name
colour: blue
rules:
  - path: app/*/x
    capabilities: [read, fly]
  - path: app/db
    capabilities: [deny, read]
  - path: app/db
    capabilities: []
`),
    ).toThrow(
      [
        '  - unknown field "colour"',
        "  - name: 1 to 64 lower-case letters, digits, '.', '_' or '-'",
        "  - rules[0].path: bad path pattern \"app/*/x\": '*' may only end a pattern",
        `  - rules[0].capabilities: unknown capability "fly" (known: ${capabilities.join(", ")})`,
        "  - rules[1].capabilities: deny cannot be combined with others",
        "  - rules[2].path: app/db appears twice (merge the rules)",
        "  - rules[2].capabilities: a non-empty list",
      ].join("\n"),
    );
    expect(() => parsePolicy("name: [")).toThrow(/not valid YAML or JSON/);
    expect(() => parsePolicy("name: empty\nrules: []")).toThrow(/rules: a non-empty list/);
  });
});
