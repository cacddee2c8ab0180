// `kv metadata --generator SPEC`: each kind read from its one-word spelling and written back the
// same way, x509 names that are IP addresses (IPv6 ones in brackets), and malformed specs refused
// with what is wrong.

import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { describeGenerator, parseGeneratorFlag } from "../../cli/generator-flag.js";

function generatorOf(spec: string) {
  const parsed = parseGeneratorFlag(spec);
  if (parsed.clear) throw new Error(`${spec} cleared the generator`);
  return parsed.generator;
}

describe("parseGeneratorFlag", () => {
  it("reads each kind, and describeGenerator writes it back as it was given", () => {
    for (const spec of [
      "random-bytes:32:hex",
      "password:24:lower=1,upper=1,digits=1,symbols=2",
      "ed25519",
      "rsa:3072",
      "x509:web:api.svc.example:ttl=7200000ms,dns=api-1.svc.example",
      "x509:web:10.0.0.7",
    ])
      expect(describeGenerator(generatorOf(spec))).toBe(spec);
    expect(parseGeneratorFlag("none")).toEqual({ clear: true });
  });

  it("takes an IPv6 address in brackets as an x509 name, and gives it back in brackets", () => {
    const generator = generatorOf("x509:web:[2001:db8::1]:ttl=1h,dns=[::1],dns=api.svc.example");
    expect(generator.kind).toEqual({
      $case: "x509",
      value: {
        role: "web",
        commonName: "2001:db8::1",
        dnsNames: ["::1", "api.svc.example"],
        ttlMs: 3_600_000,
      },
    });
    expect(describeGenerator(generator)).toBe(
      "x509:web:[2001:db8::1]:ttl=3600000ms,dns=[::1],dns=api.svc.example",
    );
  });

  it("refuses a malformed spec, saying what is wrong", () => {
    const refusal = (spec: string) => {
      try {
        parseGeneratorFlag(spec);
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidArgumentError);
        return (error as Error).message;
      }
      throw new Error(`${spec} was accepted`);
    };
    expect(refusal("x509:web")).toBe("--generator x509: give ROLE:COMMON_NAME");
    expect(refusal("x509:web:2001:db8::1")).toMatch(/^--generator x509: too many parts in/);
    expect(refusal("x509:web:api.example:owner=me")).toBe(
      '--generator x509: "owner=me" is not ttl=DURATION or dns=NAME',
    );
    expect(refusal("x509:web:api.example:ttl=0s")).toBe(
      "--generator x509: ttl must be longer than 0 (leave it out for the role's).",
    );
    expect(refusal("rsa:big")).toBe("--generator rsa: the bits must be a number");
    expect(refusal("aes:256")).toMatch(/^--generator: "aes" is not random-bytes:LENGTH/);
  });
});
