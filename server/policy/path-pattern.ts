// Path patterns of policy rules, as operators of Vault know them: segments joined by '/', where a
// segment '+' matches exactly one segment and a trailing '*' matches any rest (including '/').
// "app/+/db" matches "app/web/db"; "app/*" matches "app/x" and "app/x/y"; "app/d*" matches
// "app/db" and "app/dev/x". A '*' anywhere but at the end, or a '+' inside a segment, is refused.
//
// When several patterns match a path, the most specific wins (Vault's priority rules, in order):
// the first wildcard ('+' or '*') later in the pattern; not ending in '*'; fewer '+' segments; a
// longer pattern; and, for a total order, the lexicographically greater pattern.

export class PolicyError extends Error {
  override readonly name = "PolicyError";
}

const literalSegment = /^[A-Za-z0-9._-]+$/;

export interface PathPattern {
  readonly text: string;
  /** Literal segments, or null for '+'. The last segment may carry a glob prefix (see glob). */
  readonly segments: readonly (string | null)[];
  /** Ends in '*': the last literal segment is a prefix, and anything may follow it. */
  readonly glob: boolean;
  /** Index in `text` of the first '+' or '*', or text.length when there is none. */
  readonly firstWildcard: number;
  readonly plusCount: number;
}

export function parsePathPattern(text: string): PathPattern {
  const fail = (why: string): never => {
    throw new PolicyError(`bad path pattern ${JSON.stringify(text)}: ${why}`);
  };
  if (typeof text !== "string" || text.length === 0) return fail("a pattern is a non-empty string");
  if (text.length > 512) fail("longer than 512 characters");
  const glob = text.endsWith("*");
  const body = glob ? text.slice(0, -1) : text;
  if (body.includes("*")) fail("'*' may only end a pattern");
  if (body.startsWith("/")) fail("a pattern does not start with '/'");
  const parts = body === "" ? [] : body.split("/");
  const segments: (string | null)[] = [];
  parts.forEach((part, position) => {
    const last = position === parts.length - 1;
    if (part === "+") {
      if (last && glob) fail("'+*' is not a pattern: write '+/*' for one segment and anything after it");
      segments.push(null);
      return;
    }
    // With a glob, the last part may be empty ("app/*") or a prefix ("app/d*").
    if (part === "" && last && glob) {
      segments.push("");
      return;
    }
    if (part.includes("+")) fail("'+' must be a whole segment");
    if (!literalSegment.test(part))
      fail(
        `segment ${JSON.stringify(part)} is empty or has characters other than letters, digits, '.', '_', '-'`,
      );
    segments.push(part);
  });
  const plus = text.indexOf("+");
  const star = glob ? text.length - 1 : -1;
  const wildcards = [plus, star].filter((index) => index >= 0);
  return {
    text,
    segments,
    glob,
    firstWildcard: wildcards.length === 0 ? text.length : Math.min(...wildcards),
    plusCount: segments.filter((segment) => segment === null).length,
  };
}

/** Whether `pattern` matches the request path `path` (a valid secret path or list prefix). */
export function matchesPath(pattern: PathPattern, path: string): boolean {
  const parts = path === "" ? [] : path.split("/");
  const { segments, glob } = pattern;
  if (!glob) {
    if (parts.length !== segments.length) return false;
    return segments.every((segment, i) => segment === null || segment === parts[i]);
  }
  // All but the last pattern segment match whole segments; the last one is a prefix of the rest
  // of the path (which may go on over '/'). Too few segments cannot match: "app/*" needs "app/".
  const fixed = segments.length - 1;
  if (fixed < 0) return true;
  if (parts.length < segments.length) return false;
  for (let i = 0; i < fixed; i++) {
    const segment = segments[i];
    if (segment !== null && segment !== parts[i]) return false;
  }
  const restStart = parts.slice(0, fixed).join("/").length + (fixed > 0 ? 1 : 0);
  return path.slice(restStart).startsWith(segments[fixed] ?? "");
}

/** Negative when `a` is less specific than `b`, positive when more, 0 only for the same text. */
export function compareSpecificity(a: PathPattern, b: PathPattern): number {
  if (a.firstWildcard !== b.firstWildcard) return a.firstWildcard - b.firstWildcard;
  if (a.glob !== b.glob) return a.glob ? -1 : 1;
  if (a.plusCount !== b.plusCount) return b.plusCount - a.plusCount;
  if (a.text.length !== b.text.length) return a.text.length - b.text.length;
  return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
}
