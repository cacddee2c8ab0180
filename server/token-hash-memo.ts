// A caller's token is hashed twice on every call that carries it, on every node the call passes:
// the authorizer finds the token's record by HMAC(token key, token), and the audit trail records
// HMAC(audit key, token). A client sends the same token call after call, and each HMAC costs an
// HMAC object (6-9 µs under load here; keeping the hashes measured 3-6% less CPU per read,
// docs/performance.md). So the hashes of the tokens seen lately are kept, for as long as the key
// is the same buffer (a RootDerivedKey keeps it while the root key stays), and dropped when the
// key changes or the node seals. They are bounded (the oldest goes first): a node whose callers
// hold more tokens than that hashes the others as before. A value longer than a strongroom token
// (what a client may put in its authorization header) is hashed and not kept, so junk cannot
// fill the memory. The tokens kept are in process memory only, and only while the node is
// unsealed, as the root key is.

/** The longest value kept: a strongroom token is "sr." and 43 characters (token-ids.ts). */
export const keptTokenLengthMax = 64;

/** The keyed hashes of the most recent `capacity` tokens, under one key at a time. */
export class TokenHashMemo {
  private key: Uint8Array | null = null;
  private readonly hashes = new Map<string, string>();

  constructor(
    private readonly hash: (key: Uint8Array, token: string) => string,
    private readonly capacity = 4096,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`a token hash memo holds at least 1 token: got ${capacity}`);
  }

  /** hash(key, token), from the memo when this token was hashed under this same key buffer. */
  of(key: Uint8Array, token: string): string {
    if (key !== this.key) {
      this.hashes.clear();
      this.key = key;
    }
    if (token.length > keptTokenLengthMax) return this.hash(key, token);
    const known = this.hashes.get(token);
    if (known !== undefined) return known;
    const hashed = this.hash(key, token);
    if (this.hashes.size >= this.capacity) {
      const oldest = this.hashes.keys().next();
      if (oldest.done !== true) this.hashes.delete(oldest.value);
    }
    this.hashes.set(token, hashed);
    return hashed;
  }

  /** Drops every token and hash (the node sealed, or its key changed). */
  forget(): void {
    this.hashes.clear();
    this.key = null;
  }

  /** Tokens held. */
  get size(): number {
    return this.hashes.size;
  }
}
