// Tokens as clients hold them, and how the cluster names them without keeping them. A token is
// "sr." and 32 random bytes (base64url); the cluster stores only HMAC-SHA256(token key, token),
// where the token key is derived from the root key (so every unsealed node has it and no disk
// holds it): a copy of the data directory or a snapshot does not yield a usable token. An
// accessor is a second random id, public enough for lookup and revocation by operators who must
// not hold the token itself.

import { createHmac, randomBytes } from "node:crypto";
import { NodeError } from "../errors.js";

const tokenPrefix = "sr.";
const tokenPattern = /^sr\.[A-Za-z0-9_-]{43}$/;
const accessorPattern = /^[a-f0-9]{32}$/;

export function newToken(): string {
  return tokenPrefix + randomBytes(32).toString("base64url");
}

export function newAccessor(): string {
  return randomBytes(16).toString("hex");
}

export function deriveTokenKey(rootKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", rootKey).update("strongroom token key v1").digest());
}

/** The name of a token's record: its keyed hash, in hex. */
export function tokenHash(tokenKey: Uint8Array, token: string): string {
  return createHmac("sha256", tokenKey).update(token).digest("hex");
}

export function isWellFormedToken(token: string): boolean {
  return tokenPattern.test(token);
}

export function checkAccessor(accessor: string): string {
  if (!accessorPattern.test(accessor))
    throw new NodeError("INVALID_ARGUMENT", "an accessor is 32 lower-case hexadecimal digits");
  return accessor;
}

/**
 * The token of an `authorization` metadata value ("Bearer sr.…"), or null when there is none. A
 * value of another form is returned whole: the authorizer refuses it like any invalid token (so
 * the refusal is audited and counts towards the presenter's backoff).
 */
export function tokenOfAuthorization(value: string | undefined): string | null {
  if (value === undefined || value === "") return null;
  return /^Bearer (\S+)$/.exec(value)?.[1] ?? value;
}
