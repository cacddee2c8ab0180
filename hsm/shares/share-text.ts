// How one Shamir share is written down: Crockford base32 in groups of five, with a checksum, so a
// share read aloud or typed by an operator is caught on entry when one character is wrong (rather
// than producing a garbage key after the threshold is reached). Decoding ignores case, spaces and
// dashes, and reads the letters people confuse (I, L as 1; O as 0) the way Crockford defines.
//
// Bytes: version (u8 = 1) | share set id (4) | index (u8, 1-based) | payload | checksum (4)
// payload: the polynomial's values for the secret's bytes, then the x coordinate (the layout of
// the `shamir-secret-sharing` package); checksum: CRC-32 (u32 BE) over what precedes. A CRC-32
// detects every error burst of up to 32 bits, so any one mistyped character (5 bits) and any two
// swapped neighbours (10 bits) are caught for certain, not just with high probability.

import { crc32 } from "node:zlib";
import { SealError } from "../errors.js";

const textVersion = 1;
export const shareSetIdBytes = 4;
const checksumBytes = 4;
const headerBytes = 1 + shareSetIdBytes + 1;
const groupLength = 5;
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
const decodeTable = buildDecodeTable();

export interface ParsedShare {
  readonly setId: Uint8Array;
  /** 1-based position of the share in its set, as printed at init ("share 3 of 5"). */
  readonly index: number;
  /** The share bytes the Shamir implementation combines (values, then the x coordinate). */
  readonly payload: Uint8Array;
}

export function encodeShare(share: ParsedShare): string {
  const { setId, index, payload } = share;
  if (setId.length !== shareSetIdBytes || !Number.isInteger(index) || index < 1 || index > 255) {
    throw new SealError("INVALID_ARGUMENT", "a share needs a 4-byte set id and an index from 1 to 255");
  }
  const bytes = new Uint8Array(headerBytes + payload.length + checksumBytes);
  bytes[0] = textVersion;
  bytes.set(setId, 1);
  bytes[1 + shareSetIdBytes] = index;
  bytes.set(payload, headerBytes);
  bytes.set(checksumOf(bytes.subarray(0, bytes.length - checksumBytes)), bytes.length - checksumBytes);
  const text = base32Encode(bytes);
  bytes.fill(0);
  const groups: string[] = [];
  for (let at = 0; at < text.length; at += groupLength) groups.push(text.slice(at, at + groupLength));
  return groups.join("-");
}

/** Parses a share as typed; a typo fails with SHARE_MISTYPED, never with a wrong share. */
export function decodeShare(text: string): ParsedShare {
  if (typeof text !== "string" || text.length > 1024) {
    throw new SealError("SHARE_MISTYPED", "a share must be a string of at most 1024 characters");
  }
  const bytes = base32Decode(text);
  if (bytes.length < headerBytes + 2 + checksumBytes) {
    throw new SealError("SHARE_MISTYPED", "the share is too short: a character group is missing");
  }
  const body = bytes.subarray(0, bytes.length - checksumBytes);
  const expected = checksumOf(body);
  const actual = bytes.subarray(bytes.length - checksumBytes);
  if (!expected.every((byte, i) => byte === actual[i])) {
    bytes.fill(0);
    throw new SealError(
      "SHARE_MISTYPED",
      "the share is mistyped: its checksum does not match (compare it group by group with the original)",
    );
  }
  if (bytes[0] !== textVersion) {
    throw new SealError("SHARE_MISTYPED", `the share has an unknown format version ${bytes[0]}`);
  }
  const index = bytes[1 + shareSetIdBytes] ?? 0;
  if (index < 1) throw new SealError("SHARE_MISTYPED", "the share has index 0, which no share has");
  return {
    setId: bytes.slice(1, 1 + shareSetIdBytes),
    index,
    payload: bytes.slice(headerBytes, bytes.length - checksumBytes),
  };
}

function checksumOf(bytes: Uint8Array): Uint8Array {
  const checksum = new Uint8Array(checksumBytes);
  new DataView(checksum.buffer).setUint32(0, crc32(bytes));
  return checksum;
}

function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += alphabet[(buffer >> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(buffer << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string): Uint8Array {
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  const lower = text.toLowerCase();
  for (let position = 0; position < lower.length; position++) {
    const char = lower.charAt(position);
    if (char === "-" || char === " " || char === "\n" || char === "\t") continue;
    const value = decodeTable.get(char);
    if (value === undefined) {
      // The position, not the character: an error message never repeats what was typed.
      throw new SealError(
        "SHARE_MISTYPED",
        `character ${position + 1} of the share is not a share character (0-9 and a-z without u)`,
      );
    }
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
    buffer &= (1 << bits) - 1;
  }
  return new Uint8Array(out);
}

function buildDecodeTable(): Map<string, number> {
  const table = new Map<string, number>();
  for (let i = 0; i < alphabet.length; i++) table.set(alphabet.charAt(i), i);
  table.set("o", 0);
  table.set("i", 1);
  table.set("l", 1);
  return table;
}
