// The policy engine against a naive reference evaluator written separately: patterns become
// regular expressions, specificity a sort key, and the decision is read off the sorted list. For
// random policies over a small alphabet of segments (so patterns and paths collide often) and
// random requests, both must give the same answer. fast-check prints the seed and the shrunk
// counterexample on failure; replay with POLICY_PROPERTY_SEED=<seed>.

import fc from "fast-check";
import { expect, it } from "vitest";
import {
  authorize,
  type Capability,
  capabilities,
  type Policy,
  validatePolicy,
} from "../../../server/policy/policy.js";

interface ReferenceRule {
  readonly policy: string;
  readonly pattern: string;
  readonly capabilities: readonly Capability[];
}

function referenceRegex(pattern: string): RegExp {
  const glob = pattern.endsWith("*");
  const body = glob ? pattern.slice(0, -1) : pattern;
  const source = body
    .split("/")
    .map((segment) => (segment === "+" ? "[^/]+" : segment.replace(/[.]/g, "\\.")))
    .join("/");
  return new RegExp(`^${source}${glob ? ".*" : ""}$`);
}

/** Larger is more specific: [first wildcard position, not a glob, -pluses, length, text]. */
function referenceKey(pattern: string): [number, number, number, number, string] {
  const positions = [pattern.indexOf("+"), pattern.endsWith("*") ? pattern.length - 1 : -1].filter(
    (i) => i >= 0,
  );
  const first = positions.length === 0 ? pattern.length : Math.min(...positions);
  const pluses = pattern.split("/").filter((segment) => segment === "+").length;
  return [first, pattern.endsWith("*") ? 0 : 1, -pluses, pattern.length, pattern];
}

function compareKeys(a: ReturnType<typeof referenceKey>, b: ReturnType<typeof referenceKey>): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number | string;
    const y = b[i] as number | string;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

function referenceAuthorize(rules: readonly ReferenceRule[], path: string, capability: Capability): boolean {
  const matching = rules.filter((rule) => referenceRegex(rule.pattern).test(path));
  if (matching.length === 0) return false;
  if (matching.some((rule) => rule.capabilities.includes("deny"))) return false;
  const sorted = [...matching].sort((a, b) => compareKeys(referenceKey(b.pattern), referenceKey(a.pattern)));
  const top = sorted[0]?.pattern;
  return sorted.filter((rule) => rule.pattern === top).some((rule) => rule.capabilities.includes(capability));
}

const segment = fc.constantFrom("a", "b", "ab", "c");
const patternArbitrary = fc
  .tuple(
    fc.array(fc.oneof({ weight: 4, arbitrary: segment }, { weight: 1, arbitrary: fc.constant("+") }), {
      minLength: 1,
      maxLength: 3,
    }),
    fc.constantFrom("none", "segment", "prefix"),
  )
  .map(([segments, ending]) => {
    const body = segments.join("/");
    if (ending === "segment") return `${body}/*`;
    // A prefix glob needs a literal last segment ('+*' is not a pattern).
    if (ending === "prefix" && segments[segments.length - 1] !== "+") return `${body}*`;
    return body;
  });
const grantArbitrary = fc.oneof(
  { weight: 1, arbitrary: fc.constant(["deny"] as Capability[]) },
  {
    weight: 5,
    arbitrary: fc.subarray(capabilities.filter((capability) => capability !== "deny") as Capability[], {
      minLength: 1,
    }),
  },
);
const policyArbitrary = fc.uniqueArray(fc.tuple(patternArbitrary, grantArbitrary), {
  minLength: 1,
  maxLength: 5,
  selector: ([pattern]) => pattern,
});
const pathArbitrary = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join("/"));

it("agrees with the naive reference evaluator on random policies and requests", () => {
  const seed =
    process.env.POLICY_PROPERTY_SEED === undefined ? undefined : Number(process.env.POLICY_PROPERTY_SEED);
  fc.assert(
    fc.property(
      fc.array(policyArbitrary, { minLength: 1, maxLength: 3 }),
      fc.array(fc.tuple(pathArbitrary, fc.constantFrom(...capabilities)), { minLength: 1, maxLength: 20 }),
      (policyRules, requests) => {
        const policies: Policy[] = policyRules.map((rules, i) =>
          validatePolicy({
            name: `p${i}`,
            rules: rules.map(([path, granted]) => ({ path, capabilities: granted })),
          }),
        );
        const reference: ReferenceRule[] = policyRules.flatMap((rules, i) =>
          rules.map(([pattern, granted]) => ({ policy: `p${i}`, pattern, capabilities: granted })),
        );
        for (const [path, capability] of requests) {
          expect(authorize(policies, path, capability).allowed, `${capability} on ${path}`).toBe(
            referenceAuthorize(reference, path, capability),
          );
        }
      },
    ),
    { numRuns: 2000, ...(seed === undefined ? {} : { seed }) },
  );
});
