// Secret generators for scheduled rotation: what a rotating secret's next value is. Each runs on
// the leader at rotation time, with Node's CSPRNG (crypto.randomBytes, crypto.randomInt: uniform,
// no modulo bias) and key generation; the value goes straight into the barrier like any written
// value. A generator's parameters are replicated in the secret's metadata (they are not secret).

import { generateKeyPair, randomBytes, randomInt } from "node:crypto";
import { z } from "zod";

const lower = "abcdefghijklmnopqrstuvwxyz";
const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const digits = "0123456789";
const defaultSymbols = "!#$%&()*+,-.:;<=>?@[]^_{|}~";

export const generatorSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("random-bytes"),
    /** Bytes of randomness (the value is longer once encoded). */
    length: z.number().int().min(16).max(4096),
    encoding: z.enum(["base64", "hex", "raw"]).default("base64"),
  }),
  z.strictObject({
    kind: z.literal("password"),
    length: z.number().int().min(8).max(256),
    /** At least this many of each class; a class with a minimum of 0 is still allowed unless excluded. */
    minLower: z.number().int().min(0).max(256).default(1),
    minUpper: z.number().int().min(0).max(256).default(1),
    minDigits: z.number().int().min(0).max(256).default(1),
    minSymbols: z.number().int().min(0).max(256).default(1),
    /** The symbols allowed (some systems refuse some); empty: no symbols at all. */
    symbols: z
      .string()
      .max(64)
      .regex(/^[!-/:-@[-`{-~]*$/, "printable ASCII symbols only")
      .default(defaultSymbols),
  }),
  /** An Ed25519 key pair: the value is the PKCS#8 private key then the SPKI public key, both PEM. */
  z.strictObject({ kind: z.literal("ed25519") }),
  /** An RSA key pair, PEM as for Ed25519. */
  z.strictObject({
    kind: z.literal("rsa"),
    bits: z.union([z.literal(2048), z.literal(3072), z.literal(4096)], { error: "2048, 3072 or 4096" }),
  }),
  /**
   * A certificate from the cluster's internal CA under a PKI role: the value is a PEM bundle of
   * the certificate, its PKCS#8 key and the CA certificate. Names and lifetime are checked
   * against the role when the certificate is issued.
   */
  z.strictObject({
    kind: z.literal("x509"),
    role: z.string().min(1).max(63),
    commonName: z.string().min(1).max(253),
    dnsNames: z.array(z.string().min(1).max(253)).max(20).default([]),
    /** 0: the role's default. */
    ttlMs: z.number().int().min(0).default(0),
  }),
]);

export type GeneratorSpec = z.infer<typeof generatorSchema>;
export type X509GeneratorSpec = Extract<GeneratorSpec, { kind: "x509" }>;

/** What a generator may need of the node: the PKI engine, for x509. */
export interface GeneratorParts {
  readonly issueCertificate?: (
    spec: X509GeneratorSpec,
  ) => Promise<{ certificatePem: string; privateKeyPem: string; caPem: string }>;
}

export class GeneratorError extends Error {
  override readonly name = "GeneratorError";
}

/** Validates a generator's parameters (every problem named), or throws GeneratorError. */
export function parseGenerator(input: unknown): GeneratorSpec {
  const parsed = generatorSchema.safeParse(input);
  if (!parsed.success) {
    throw new GeneratorError(
      `the generator is not valid: ${parsed.error.issues.map((issue) => `${issue.path.join(".") || "kind"}: ${issue.message}`).join("; ")}`,
    );
  }
  const spec = parsed.data;
  if (spec.kind === "password") {
    const required = spec.minLower + spec.minUpper + spec.minDigits + spec.minSymbols;
    if (required > spec.length)
      throw new GeneratorError(
        `the generator is not valid: the password's minimums (${required} characters) exceed its length (${spec.length})`,
      );
    if (spec.minSymbols > 0 && spec.symbols === "")
      throw new GeneratorError("the generator is not valid: minSymbols > 0 with no symbols allowed");
  }
  return spec;
}

/**
 * A new value from the generator. Key pairs are made off the event loop (an RSA-4096 key takes
 * a second or more, which would stall the leader's heartbeats).
 */
export async function generateValue(spec: GeneratorSpec, parts: GeneratorParts = {}): Promise<Uint8Array> {
  switch (spec.kind) {
    case "x509": {
      if (parts.issueCertificate === undefined)
        throw new GeneratorError("an x509 generator needs the cluster's PKI engine");
      const issued = await parts.issueCertificate(spec);
      return new TextEncoder().encode(`${issued.certificatePem}${issued.privateKeyPem}${issued.caPem}`);
    }
    case "random-bytes": {
      const bytes = randomBytes(spec.length);
      if (spec.encoding === "raw") return new Uint8Array(bytes);
      return new TextEncoder().encode(bytes.toString(spec.encoding));
    }
    case "password":
      return new TextEncoder().encode(password(spec));
    case "ed25519":
    case "rsa": {
      const { privateKey, publicKey } = await new Promise<{ privateKey: string; publicKey: string }>(
        (resolve, reject) => {
          const encodings = {
            privateKeyEncoding: { type: "pkcs8", format: "pem" },
            publicKeyEncoding: { type: "spki", format: "pem" },
          } as const;
          const done = (error: Error | null, publicKey: string, privateKey: string) =>
            error === null ? resolve({ privateKey, publicKey }) : reject(error);
          if (spec.kind === "rsa") generateKeyPair("rsa", { modulusLength: spec.bits, ...encodings }, done);
          else generateKeyPair("ed25519", encodings, done);
        },
      );
      return new TextEncoder().encode(`${privateKey}${publicKey}`);
    }
  }
}

function password(spec: Extract<GeneratorSpec, { kind: "password" }>): string {
  const classes = [
    { alphabet: lower, minimum: spec.minLower },
    { alphabet: upper, minimum: spec.minUpper },
    { alphabet: digits, minimum: spec.minDigits },
    { alphabet: spec.symbols, minimum: spec.minSymbols },
  ].filter((characterClass) => characterClass.alphabet.length > 0);
  const pick = (alphabet: string) => alphabet[randomInt(alphabet.length)] ?? "";
  const characters: string[] = [];
  for (const { alphabet, minimum } of classes)
    for (let i = 0; i < minimum; i++) characters.push(pick(alphabet));
  const all = classes.map((characterClass) => characterClass.alphabet).join("");
  while (characters.length < spec.length) characters.push(pick(all));
  // Fisher-Yates with the CSPRNG: the required characters end up anywhere.
  for (let i = characters.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [characters[i], characters[j]] = [characters[j] ?? "", characters[i] ?? ""];
  }
  return characters.join("");
}
