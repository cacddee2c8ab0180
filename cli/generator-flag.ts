// `kv metadata --generator SPEC`: a rotation generator in one word, for the command line.
//
//   random-bytes:LENGTH[:base64|hex|raw]   e.g. random-bytes:32
//   password:LENGTH[:lower=N,upper=N,digits=N,symbols=N]   at least N of each class; symbols=0
//                                          leaves symbols out entirely (e.g. password:24:symbols=0)
//   ed25519
//   rsa:BITS                               e.g. rsa:3072
//   x509:ROLE:COMMON_NAME[:ttl=DURATION,dns=NAME,dns=NAME]
//                                          a certificate from the cluster's CA under a role; a
//                                          name may be an IP address, an IPv6 one in brackets
//                                          (x509:web:[2001:db8::1]:dns=[::1])
//   none                                   stop rotating (the generator is removed)
//
// The server validates the values (lengths, minimums); this only reads the shape.

import { InvalidArgumentError } from "commander";
import type { RotationGenerator } from "../proto/gen/strongroom/v1/secrets.gen.js";
import { positiveDuration } from "./command-support.js";

export type GeneratorFlag =
  | { readonly clear: true }
  | { readonly clear: false; readonly generator: RotationGenerator };

/** The spec's parts: split on ':' outside square brackets, which hold an IPv6 address whole. */
function specParts(text: string): string[] {
  const parts: string[] = [];
  let part = "";
  let bracketed = false;
  for (const character of text) {
    if (character === "[") bracketed = true;
    else if (character === "]") bracketed = false;
    if (character === ":" && !bracketed) {
      parts.push(part);
      part = "";
    } else part += character;
  }
  parts.push(part);
  return parts;
}

/** A name of an x509 spec without the brackets an IPv6 address is written in. */
function unbracketed(name: string): string {
  return name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
}

/** A name as an x509 spec writes it: an IPv6 address in brackets. */
function bracketed(name: string): string {
  return name.includes(":") ? `[${name}]` : name;
}

export function parseGeneratorFlag(text: string): GeneratorFlag {
  const [kind, first, second, ...rest] = specParts(text);
  const number = (value: string | undefined, what: string) => {
    if (value === undefined || !/^\d+$/.test(value))
      throw new InvalidArgumentError(`--generator ${kind}: ${what} must be a number`);
    return Number(value);
  };
  const extra = (allowed: number) => {
    if ([first, second, ...rest].filter((part) => part !== undefined).length > allowed)
      throw new InvalidArgumentError(`--generator ${kind}: too many parts in ${JSON.stringify(text)}`);
  };
  switch (kind) {
    case "none":
      extra(0);
      return { clear: true };
    case "random-bytes":
      extra(2);
      return {
        clear: false,
        generator: {
          kind: {
            $case: "randomBytes",
            value: { length: number(first, "the length"), encoding: second ?? "" },
          },
        },
      };
    case "password": {
      extra(2);
      const minimums: Record<string, number> = {};
      for (const pair of (second ?? "").split(",").filter((part) => part !== "")) {
        const [name, value] = pair.split("=");
        if (name === undefined || !["lower", "upper", "digits", "symbols"].includes(name))
          throw new InvalidArgumentError(
            `--generator password: ${JSON.stringify(name)} is not lower, upper, digits or symbols`,
          );
        minimums[name] = number(value, name);
      }
      return {
        clear: false,
        generator: {
          kind: {
            $case: "password",
            value: {
              length: number(first, "the length"),
              ...(minimums.lower === undefined ? {} : { minLower: minimums.lower }),
              ...(minimums.upper === undefined ? {} : { minUpper: minimums.upper }),
              ...(minimums.digits === undefined ? {} : { minDigits: minimums.digits }),
              ...(minimums.symbols === undefined ? {} : { minSymbols: minimums.symbols }),
              // symbols=0 leaves symbols out entirely (some systems refuse them).
              ...(minimums.symbols === 0 ? { symbols: "" } : {}),
            },
          },
        },
      };
    }
    case "ed25519":
      extra(0);
      return { clear: false, generator: { kind: { $case: "ed25519", value: {} } } };
    case "rsa":
      extra(1);
      return {
        clear: false,
        generator: { kind: { $case: "rsa", value: { bits: number(first, "the bits") } } },
      };
    case "x509": {
      extra(3);
      const [options] = rest;
      if (first === undefined || first === "" || second === undefined || second === "")
        throw new InvalidArgumentError("--generator x509: give ROLE:COMMON_NAME");
      const dnsNames: string[] = [];
      let ttlMs = 0;
      for (const pair of (options ?? "").split(",").filter((part) => part !== "")) {
        const [name, value] = pair.split("=");
        if (name === "dns" && value !== undefined && value !== "") dnsNames.push(unbracketed(value));
        else if (name === "ttl" && value !== undefined)
          ttlMs = positiveDuration("--generator x509: ttl", "the role's")(value);
        else
          throw new InvalidArgumentError(
            `--generator x509: ${JSON.stringify(pair)} is not ttl=DURATION or dns=NAME`,
          );
      }
      return {
        clear: false,
        generator: {
          kind: { $case: "x509", value: { role: first, commonName: unbracketed(second), dnsNames, ttlMs } },
        },
      };
    }
    default:
      throw new InvalidArgumentError(
        `--generator: ${JSON.stringify(kind)} is not random-bytes:LENGTH, password:LENGTH, ed25519, rsa:BITS, x509:ROLE:NAME or none`,
      );
  }
}

/** The generator as the flag spells it, for the metadata table. */
export function describeGenerator(generator: RotationGenerator | undefined): string {
  const kind = generator?.kind;
  switch (kind?.$case) {
    case "randomBytes":
      return `random-bytes:${kind.value.length}:${kind.value.encoding}`;
    case "password": {
      const { length, minLower, minUpper, minDigits, minSymbols } = kind.value;
      return `password:${length}:lower=${minLower},upper=${minUpper},digits=${minDigits},symbols=${minSymbols}`;
    }
    case "ed25519":
      return "ed25519";
    case "rsa":
      return `rsa:${kind.value.bits}`;
    case "x509": {
      const { role, commonName, dnsNames, ttlMs } = kind.value;
      const options = [
        ...(ttlMs === 0 ? [] : [`ttl=${ttlMs}ms`]),
        ...dnsNames.map((name) => `dns=${bracketed(name)}`),
      ];
      return `x509:${role}:${bracketed(commonName)}${options.length === 0 ? "" : `:${options.join(",")}`}`;
    }
    default:
      return "-";
  }
}
