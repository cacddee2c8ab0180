// Keys derived from the root key (the audit key, the token key) are needed on every call: the
// authorizer hashes the caller's token, the audit trail HMACs the sensitive fields. Deriving one
// costs an HMAC object each time (about 2% of a node's busy time under load). The root key stays
// one buffer while the node is unsealed (HeldRootKey), so the derived key is kept while the root
// key is that buffer, and zeroed when it changes (a seal, then an unseal, gives a new buffer) and
// when the node seals (its holders' forgetKeys, called by the node). Neither key lives longer in
// memory than the root key it comes from.

/** One key derived from the root key, derived again only when the root key buffer changes. */
export class RootDerivedKey {
  private root: Uint8Array | null = null;
  private derived: Uint8Array | null = null;

  constructor(private readonly derive: (rootKey: Uint8Array) => Uint8Array) {}

  /** The key derived from `rootKey`; the same buffer on every call for the same root key. */
  of(rootKey: Uint8Array): Uint8Array {
    if (rootKey !== this.root || this.derived === null) {
      this.forget();
      this.derived = this.derive(rootKey);
      this.root = rootKey;
    }
    return this.derived;
  }

  /** Zeroes the derived key (the node sealed or stopped). */
  forget(): void {
    this.derived?.fill(0);
    this.derived = null;
    this.root = null;
  }
}
