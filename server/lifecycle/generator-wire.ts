// A rotation generator between its wire form (strongroom.v1.RotationGenerator, a oneof) and the
// validated spec kept in a secret's metadata (generators.ts). A generator that does not validate
// is refused with INVALID_ARGUMENT naming the problem.

import type { RotationGenerator } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { NodeError } from "../errors.js";
import { GeneratorError, type GeneratorSpec, parseGenerator } from "./generators.js";

export function generatorFromWire(wire: RotationGenerator): GeneratorSpec {
  const kind = wire.kind;
  let candidate: Record<string, unknown>;
  switch (kind?.$case) {
    case "randomBytes":
      candidate = {
        kind: "random-bytes",
        length: kind.value.length,
        ...(kind.value.encoding === "" ? {} : { encoding: kind.value.encoding }),
      };
      break;
    case "password": {
      const { length, minLower, minUpper, minDigits, minSymbols, symbols } = kind.value;
      candidate = {
        kind: "password",
        length,
        ...(minLower === undefined ? {} : { minLower }),
        ...(minUpper === undefined ? {} : { minUpper }),
        ...(minDigits === undefined ? {} : { minDigits }),
        ...(minSymbols === undefined ? {} : { minSymbols }),
        ...(symbols === undefined ? {} : { symbols }),
      };
      break;
    }
    case "ed25519":
      candidate = { kind: "ed25519" };
      break;
    case "rsa":
      candidate = { kind: "rsa", bits: kind.value.bits };
      break;
    case "x509":
      candidate = {
        kind: "x509",
        role: kind.value.role,
        commonName: kind.value.commonName,
        dnsNames: kind.value.dnsNames,
        ttlMs: kind.value.ttlMs,
      };
      break;
    default:
      throw new NodeError(
        "INVALID_ARGUMENT",
        "the generator names no kind (random_bytes, password, ed25519, rsa or x509)",
      );
  }
  try {
    return parseGenerator(candidate);
  } catch (error) {
    if (error instanceof GeneratorError) throw new NodeError("INVALID_ARGUMENT", error.message);
    throw error;
  }
}

/** The wire form of a stored generator (validated again: a stored one is never trusted blindly). */
export function generatorToWire(
  stored: Readonly<Record<string, unknown>> | null,
): RotationGenerator | undefined {
  if (stored === null) return undefined;
  const spec = parseGenerator(stored);
  switch (spec.kind) {
    case "random-bytes":
      return { kind: { $case: "randomBytes", value: { length: spec.length, encoding: spec.encoding } } };
    case "password":
      return {
        kind: {
          $case: "password",
          value: {
            length: spec.length,
            minLower: spec.minLower,
            minUpper: spec.minUpper,
            minDigits: spec.minDigits,
            minSymbols: spec.minSymbols,
            symbols: spec.symbols,
          },
        },
      };
    case "ed25519":
      return { kind: { $case: "ed25519", value: {} } };
    case "rsa":
      return { kind: { $case: "rsa", value: { bits: spec.bits } } };
    case "x509":
      return {
        kind: {
          $case: "x509",
          value: {
            role: spec.role,
            commonName: spec.commonName,
            dnsNames: [...spec.dnsNames],
            ttlMs: spec.ttlMs,
          },
        },
      };
  }
}
