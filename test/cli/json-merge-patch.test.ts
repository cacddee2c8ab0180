// kv patch's merge: every example of RFC 7396's appendix A, and members named like the properties
// of JavaScript objects, which must stay plain members.

import { describe, expect, it } from "vitest";
import { applyMergePatch } from "../../cli/json-merge-patch.js";

describe("applyMergePatch", () => {
  it("gives every result of RFC 7396's appendix A", () => {
    const examples: [string, string, string][] = [
      ['{"a":"b"}', '{"a":"c"}', '{"a":"c"}'],
      ['{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'],
      ['{"a":"b"}', '{"a":null}', "{}"],
      ['{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'],
      ['{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'],
      ['{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'],
      ['{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'],
      ['{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'],
      ['["a","b"]', '["c","d"]', '["c","d"]'],
      ['{"a":"b"}', '["c"]', '["c"]'],
      ['{"a":"foo"}', "null", "null"],
      ['{"a":"foo"}', '"bar"', '"bar"'],
      ['{"e":null}', '{"a":1}', '{"e":null,"a":1}'],
      ["[1,2]", '{"a":"b","c":null}', '{"a":"b"}'],
      ["{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'],
    ];
    for (const [target, patch, result] of examples) {
      expect(applyMergePatch(JSON.parse(target), JSON.parse(patch)), `${target} + ${patch}`).toEqual(
        JSON.parse(result),
      );
    }
  });

  it("leaves its arguments as they were", () => {
    const target = { a: { b: 1 }, c: 2 };
    const patch = { a: { b: null, d: 3 } };
    expect(applyMergePatch(target, patch)).toEqual({ a: { d: 3 }, c: 2 });
    expect(target).toEqual({ a: { b: 1 }, c: 2 });
    expect(patch).toEqual({ a: { b: null, d: 3 } });
  });

  it("takes members named __proto__, constructor and prototype as plain members, and applies the rest", () => {
    const target = JSON.parse('{"constructor":"old","keep":1}');
    const patch = JSON.parse(
      '{"constructor":"new","prototype":{"x":1},"__proto__":{"polluted":true},"after":2}',
    );
    const merged = applyMergePatch(target, patch) as Record<string, unknown>;
    expect(JSON.stringify(merged)).toBe(
      '{"constructor":"new","keep":1,"prototype":{"x":1},"__proto__":{"polluted":true},"after":2}',
    );
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const removed = applyMergePatch(merged, JSON.parse('{"__proto__":null}'));
    expect(JSON.stringify(removed)).toBe('{"constructor":"new","keep":1,"prototype":{"x":1},"after":2}');
  });
});
