// The rotation generators make values a consumer can use: random bytes of the length and
// encoding asked, passwords that meet their character policy, key pairs that parse and match
// (a signature made with the private key verifies with the public one), certificates from the
// PKI engine as a PEM bundle. Bad parameters are refused with the problem named.

import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { expect, it } from "vitest";
import { describeGenerator, parseGeneratorFlag } from "../../cli/generator-flag.js";
import { GeneratorError, generateValue, parseGenerator } from "../../server/lifecycle/generators.js";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

it("random bytes: the length asked, in the encoding asked, different every time", async () => {
  const base64 = text(await generateValue(parseGenerator({ kind: "random-bytes", length: 32 })));
  expect(Buffer.from(base64, "base64")).toHaveLength(32);
  const hex = text(
    await generateValue(parseGenerator({ kind: "random-bytes", length: 20, encoding: "hex" })),
  );
  expect(hex).toMatch(/^[0-9a-f]{40}$/);
  expect(
    await generateValue(parseGenerator({ kind: "random-bytes", length: 64, encoding: "raw" })),
  ).toHaveLength(64);
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++)
    seen.add(text(await generateValue(parseGenerator({ kind: "random-bytes", length: 16 }))));
  expect(seen.size).toBe(50);
});

it("passwords meet their policy, every time", async () => {
  const spec = parseGenerator({
    kind: "password",
    length: 12,
    minLower: 2,
    minUpper: 2,
    minDigits: 3,
    minSymbols: 2,
    symbols: "!@#",
  });
  for (let i = 0; i < 200; i++) {
    const password = text(await generateValue(spec));
    expect(password).toHaveLength(12);
    expect(password).toMatch(/^[a-zA-Z0-9!@#]+$/);
    expect(password.match(/[a-z]/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(password.match(/[A-Z]/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(password.match(/[0-9]/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(password.match(/[!@#]/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
  }
  // No symbols at all when none are allowed.
  const plain = parseGenerator({ kind: "password", length: 30, minSymbols: 0, symbols: "" });
  expect(text(await generateValue(plain))).toMatch(/^[a-zA-Z0-9]{30}$/);
});

it("key pairs parse, and the public key verifies what the private key signs", async () => {
  for (const spec of [parseGenerator({ kind: "ed25519" }), parseGenerator({ kind: "rsa", bits: 2048 })]) {
    const pem = text(await generateValue(spec));
    const privatePem = pem.slice(0, pem.indexOf("-----BEGIN PUBLIC KEY-----"));
    const publicPem = pem.slice(pem.indexOf("-----BEGIN PUBLIC KEY-----"));
    const privateKey = createPrivateKey(privatePem);
    const publicKey = createPublicKey(publicPem);
    expect(privateKey.asymmetricKeyType).toBe(spec.kind);
    const message = Buffer.from("rotated");
    const algorithm = spec.kind === "rsa" ? "sha256" : null;
    expect(verify(algorithm, message, publicKey, sign(algorithm, message, privateKey))).toBe(true);
    if (spec.kind === "rsa") expect(privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  }
});

it("refuses bad parameters, naming the problem", () => {
  expect(() => parseGenerator({ kind: "random-bytes", length: 8 })).toThrow(GeneratorError);
  expect(() => parseGenerator({ kind: "random-bytes", length: 8 })).toThrow(/length: /);
  expect(() => parseGenerator({ kind: "password", length: 8, minDigits: 9 })).toThrow(
    "the password's minimums (12 characters) exceed its length (8)",
  );
  expect(() => parseGenerator({ kind: "password", length: 16, minSymbols: 1, symbols: "" })).toThrow(
    "minSymbols > 0 with no symbols allowed",
  );
  expect(() => parseGenerator({ kind: "password", length: 16, symbols: "ab" })).toThrow(
    /printable ASCII symbols only/,
  );
  expect(() => parseGenerator({ kind: "rsa", bits: 1024 })).toThrow(
    "the generator is not valid: bits: 2048, 3072 or 4096",
  );
  expect(() => parseGenerator({ kind: "dsa" })).toThrow(/kind/);
});

it("an x509 generator: its parameters checked, the PKI engine asked for the certificate, the value a PEM bundle", async () => {
  expect(() => parseGenerator({ kind: "x509", role: "", commonName: "a.svc.test" })).toThrow(/role: /);
  expect(() => parseGenerator({ kind: "x509", role: "web", commonName: "a", ttlMs: -1 })).toThrow(/ttlMs: /);
  const spec = parseGenerator({ kind: "x509", role: "web", commonName: "a.svc.test" });
  expect(spec).toEqual({ kind: "x509", role: "web", commonName: "a.svc.test", dnsNames: [], ttlMs: 0 });
  await expect(generateValue(spec)).rejects.toThrow("an x509 generator needs the cluster's PKI engine");
  const asked: unknown[] = [];
  const value = await generateValue(spec, {
    issueCertificate: async (request) => {
      asked.push(request);
      return { certificatePem: "CERT\n", privateKeyPem: "KEY\n", caPem: "CA\n" };
    },
  });
  expect(asked).toEqual([spec]);
  expect(text(value)).toBe("CERT\nKEY\nCA\n");
});

it("the CLI's --generator spelling of each kind reads back as it was written", () => {
  for (const spelling of [
    "random-bytes:32:hex",
    "password:24:lower=1,upper=1,digits=1,symbols=0",
    "ed25519",
    "rsa:3072",
    "x509:web:api.svc.test",
    "x509:web:api.svc.test:ttl=3600000ms,dns=b.svc.test,dns=c.svc.test",
  ]) {
    const parsed = parseGeneratorFlag(spelling);
    if (parsed.clear) throw new Error("not a generator");
    const described = describeGenerator(parsed.generator);
    expect(described.startsWith(spelling.split(":")[0] ?? "")).toBe(true);
    if (spelling.startsWith("x509") || spelling === "ed25519" || spelling === "rsa:3072")
      expect(described).toBe(spelling);
  }
  expect(() => parseGeneratorFlag("x509:web")).toThrow("--generator x509: give ROLE:COMMON_NAME");
  expect(() => parseGeneratorFlag("x509:web:a.svc.test:size=3")).toThrow(/is not ttl=DURATION or dns=NAME/);
  expect(() => parseGeneratorFlag("x509:web:a.svc.test:ttl=soon")).toThrow(/duration/);
});
