// What every client command shares: where its output goes (so tests can capture it), the
// connection flags, argument parsers, and how a failure becomes a message on stderr and an exit
// code (0 ok, 1 error, 2 usage).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Argument, type Command, InvalidArgumentError, Option } from "commander";
import { armorPrefix } from "../hsm/shares/share-encryption.js";
import { describeCallError, UsageError } from "./client-connection.js";
import { parseDuration } from "./duration-text.js";

export interface Output {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly exit: (code: number) => void;
  readonly stdin: () => Promise<Buffer>;
}

export const processOutput: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  exit: (code) => process.exit(code),
  stdin: async () => {
    if (process.stdin.isTTY)
      throw new UsageError("pipe the value on stdin, or give --file (values are never arguments)");
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
};

export function connectionFlags(command: Command): Command {
  return command
    .option("--addr <addresses>", "node addresses, comma-separated (default: STRONGROOM_ADDR)")
    .option("--cacert <file>", "CA bundle of the nodes' certificates (default: STRONGROOM_CACERT)")
    .option("--client-cert <file>", "client certificate (default: STRONGROOM_CLIENT_CERT)")
    .option("--client-key <file>", "client key (default: STRONGROOM_CLIENT_KEY)");
}

/**
 * A flag whose default is a placeholder (0, [], false) meaning something else ("its TTL", "the
 * newest"): help shows the meaning, not the placeholder beside it.
 */
export function optionMeaning<T>(
  flags: string,
  description: string,
  value: T,
  meaning: string,
  parse?: (text: string, previous: T) => T,
): Option {
  const option = new Option(flags, description).default(value, meaning);
  return parse === undefined ? option : option.argParser(parse);
}

/** An optional argument whose default ("") means something else ("everything the caller may list"). */
export function argumentMeaning(name: string, description: string, value: string, meaning: string): Argument {
  return new Argument(name, description).default(value, meaning);
}

/**
 * The largest value of the uint32 fields most integer flags go into. Without this bound a larger
 * one failed in the gRPC library ("Request message serialization failure: invalid uint32").
 */
export const uint32Max = 4_294_967_295;

/** An integer flag of at least 0, at most `maximum` (by default a uint32's). */
export function nonNegativeInteger(name: string, maximum = uint32Max) {
  return integerInRange(name, 0, maximum, "a non-negative integer");
}

/** An integer flag of at least 1 (a count where none makes no sense), at most a uint32's. */
export function positiveInteger(name: string) {
  return integerInRange(name, 1, uint32Max, "a positive integer");
}

function integerInRange(name: string, minimum: number, maximum: number, what: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < minimum)
      throw new InvalidArgumentError(`${name} must be ${what}.`);
    if (parsed > maximum) throw new InvalidArgumentError(`${name} must be at most ${maximum}.`);
    return parsed;
  };
}

/**
 * The bytes of a file the command line names (`what`: the flag or argument, for the message). One
 * that cannot be read is a usage error that names it and says why, not Node's bare ENOENT/EISDIR.
 */
export function readNamedFile(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? "it is a directory"
          : code === "EACCES"
            ? "permission denied"
            : error instanceof Error
              ? error.message
              : String(error);
    throw new UsageError(`cannot read ${what} ${file}: ${why}`);
  }
}

/** Runs a command body, mapping failures to stderr and exit codes (2 usage, 1 anything else). */
export async function run(output: Output, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    output.err(`strongroom: ${describeCallError(error)}\n`);
    output.exit(error instanceof UsageError ? 2 : 1);
  }
}

/** A duration flag: "90s", "15m", "1h", "7d", "500ms", or plain milliseconds. */
export function duration(name: string) {
  return (value: string): number => {
    const amount = parseDuration(value);
    if (amount === null) throw new InvalidArgumentError(`${name} is a duration such as 90s, 15m, 1h or 7d.`);
    return amount;
  };
}

/**
 * A duration for an option whose 0 the cluster takes as "not given" (a default applies): 0 is
 * refused, rather than silently meaning the default (`token create --ttl 0s` made a token of the
 * cluster's default hour).
 */
export function positiveDuration(name: string, whenLeftOut: string) {
  const parse = duration(name);
  return (value: string): number => {
    const amount = parse(value);
    if (amount === 0)
      throw new InvalidArgumentError(`${name} must be longer than 0 (leave it out for ${whenLeftOut}).`);
    return amount;
  };
}

/** What each share call of an attempt (rekey, seal migration, root token) answers. */
interface ShareStep {
  readonly complete: boolean;
  readonly nonce: string;
  readonly progress: number;
  readonly threshold: number;
}

/**
 * Gives `shares` one call at a time, each with the attempt's nonce, until an answer says the
 * attempt is complete (that answer is returned); progress goes to stderr. Too few: a usage error.
 */
export async function giveShares<Step extends ShareStep>(
  output: Output,
  shares: AsyncIterable<string> | Iterable<string>,
  give: (share: string, nonce: string) => Promise<Step>,
): Promise<Step> {
  let nonce = "";
  for await (const share of shares) {
    const step = await give(share, nonce);
    if (step.complete) return step;
    nonce = step.nonce;
    output.err(`${step.progress}/${step.threshold} shares\n`);
  }
  throw new UsageError("not enough shares were given");
}

/** Lines of stdin, trimmed, without empty ones (shares, one per line). */
export async function stdinLines(output: Output): Promise<string[]> {
  return (await output.stdin())
    .toString("utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

/**
 * A share as the share commands send it. One encrypted to an operator's key (init or rekey with
 * --operator-key) is refused with the way to decrypt it: the cluster only takes plain shares.
 */
export function plainShare(share: string): string {
  if (share.startsWith(armorPrefix)) {
    throw new UsageError(
      "this share is encrypted to an operator's key: decrypt it first, e.g. strongroom operator decrypt-share --private-key KEY.pem < share | strongroom operator unseal",
    );
  }
  return share;
}

/** Reads one line from the terminal without echoing it (a share, a token). */
export function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY)
    return Promise.reject(new UsageError("no terminal to prompt on: pipe the input on stdin"));
  // Echo off before the prompt shows, so nothing typed at once is echoed either.
  input.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let line = "";
    // A 'data' listener rather than for-await: leaving a for-await loop destroys stdin, and the
    // next prompt would find it gone.
    const finish = () => {
      input.off("data", take);
      input.setRawMode(false);
      input.pause();
      process.stderr.write("\n");
    };
    const take = (chunk: Buffer) => {
      for (const character of chunk.toString("utf8")) {
        if (character === "\u0003") {
          finish();
          reject(new UsageError("interrupted"));
          return;
        }
        if (character === "\r" || character === "\n") {
          finish();
          resolve(line);
          return;
        }
        line = character === "\u007f" ? line.slice(0, -1) : line + character;
      }
    };
    input.on("data", take);
    input.resume();
  });
}

export type Format = "table" | "json" | "yaml";

/** Adds --format (table, json or yaml) to a command. */
export function formatFlag(command: Command): Command {
  return command.option(
    "--format <format>",
    "output: table (default), json or yaml",
    (value: string): Format => {
      if (value !== "table" && value !== "json" && value !== "yaml")
        throw new InvalidArgumentError("--format is table, json or yaml.");
      return value;
    },
    "table",
  );
}

/**
 * The YAML library, loaded at the first YAML output: it costs every command's start about 20 ms
 * (docs/performance.md), and emit() stays synchronous for its fifty callers.
 */
function yamlLibrary(): typeof import("yaml") {
  return createRequire(import.meta.url)("yaml") as typeof import("yaml");
}

/**
 * What a command that could not start says: the error's message, in one line, for what an
 * operator can act on (a port in use, a mount without root); a programming error keeps its stack,
 * for whoever fixes it.
 */
export function failureText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const bug = error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError;
  return bug ? (error.stack ?? error.message) : error.message;
}

/** Writes `data` as JSON or YAML (bytes as base64), or `table` for people. */
export function emit(output: Output, format: Format, data: unknown, table: () => string): void {
  const plain = JSON.parse(
    // A function, to see the holder's own member: JSON.stringify turns a Buffer (what protobuf's
    // reader gives for a bytes field) into {type: "Buffer", data: [...]} before a replacer sees it.
    JSON.stringify(data, function (this: Record<string, unknown>, key, value: unknown) {
      const own = this[key];
      return own instanceof Uint8Array ? Buffer.from(own).toString("base64") : value;
    }),
  ) as unknown;
  if (format === "json") output.out(`${JSON.stringify(plain, null, 2)}\n`);
  else if (format === "yaml") output.out(yamlLibrary().stringify(plain));
  else output.out(table());
}

/** Rows of name and value, aligned. */
export function rows(entries: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...entries.map(([name]) => name.length)) + 2;
  return entries.map(([name, value]) => `${name.padEnd(width)}${value}\n`).join("");
}

/**
 * Rows under a header, each column as wide as its widest cell, with no trailing spaces: a node id
 * or an IPv6 address longer than the others widens its column instead of shifting the row.
 */
export function table(header: readonly string[], body: readonly (readonly string[])[]): string {
  const all = [header, ...body];
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)));
  return all
    .map(
      (row) =>
        `${row
          .map((cell, column) => cell.padEnd((widths[column] ?? 0) + 2))
          .join("")
          .trimEnd()}\n`,
    )
    .join("");
}

/** A repeatable option's values (commander calls it once per occurrence). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** An integer flag within bounds. */
export function integerBetween(name: string, min: number, max: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}.`);
    return parsed;
  };
}
