// JSON Merge Patch (RFC 7396), what `kv patch` applies, as Vault's `kv patch` does: a patch's
// object members merge into the target's, recursively; a member whose value is null removes that
// member; anything else (a string, a number, an array) replaces. Our own rather than the npm
// package json-merge-patch: that one stops at a member named "constructor" or "prototype" and
// silently drops the rest of the patch.

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Sets a member as JSON.parse does, as an own data property: a member named "__proto__" is a
 * member like any other, never the object's prototype.
 */
function setMember(object: JsonObject, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The target with the patch applied (RFC 7396, section 2); neither argument is changed. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: JsonObject = {};
  if (isObject(target)) for (const [key, value] of Object.entries(target)) setMember(result, key, value);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else setMember(result, key, applyMergePatch(Object.hasOwn(result, key) ? result[key] : undefined, value));
  }
  return result;
}
