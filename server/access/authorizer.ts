// Who a caller is and what it may do. A caller is its certificate's identity and, when it presents
// one in the `authorization` metadata, a token: with a token it acts under the token's policies;
// without, under the policies bound to its identity. Each call is then checked against the method's
// permission (method-permissions.ts) with the pure policy engine: deny by default, an explicit deny
// wins, the most specific rule decides. Runs as an interceptor on the node that took the call and
// again on the leader when the call is forwarded (with the same identity and token), so a stale
// follower can never grant what the leader's state does not.
//
// A use-limited token spends one use per call, on the node where the call runs, just before it
// runs (spendUse, called by the executor): a call refused first spends nothing, a forwarded call
// spends on the leader (after the leader's own check, which must still find the token), and the
// rest of the call goes on with the caller as checked, so a call that spent the last use still
// completes (Vault's order: the token is used up after its last call, not during it).

import { NodeError } from "../errors.js";
import { authorize, type Capability, type Policy, validatePolicy } from "../policy/policy.js";
import type { Interceptor, RequestContext } from "../request.js";
import { RootDerivedKey } from "../root-derived-key.js";
import { TokenHashMemo } from "../token-hash-memo.js";
import { bindingCovers, type TokenRecord } from "./access-records.js";
import type { AccessRecords, AccessView } from "./access-view.js";
import { methodPermissions } from "./method-permissions.js";
import type { RefusalMetrics } from "./refusal-metrics.js";
import type { TokenBackoff } from "./token-backoff.js";
import { deriveTokenKey, isWellFormedToken, tokenHash } from "./token-ids.js";

/** The built-in policy of the root token: everything, sudo included. It cannot be written or deleted. */
export const rootPolicyName = "root";
const rootPolicy: Policy = validatePolicy({
  name: rootPolicyName,
  rules: [{ path: "*", capabilities: ["create", "read", "update", "delete", "list", "destroy", "sudo"] }],
});

/** A token's parent chain is checked up to this depth (a deeper chain is refused at creation). */
export const tokenDepthMax = 32;

export interface Caller {
  readonly identity: string;
  /** The keyed hash of the caller's token, or null when it presented none. */
  readonly tokenHash: string | null;
  readonly token: TokenRecord | null;
  /** The names of the policies the caller acts under. */
  readonly policyNames: readonly string[];
  readonly policies: readonly Policy[];
}

export interface AuthorizerOptions {
  readonly view: AccessView;
  /** Before init there is nothing to protect and no one can hold a token: every call is open. */
  readonly initialized: () => boolean;
  /** The root key while unsealed (the token key is derived from it), else null. */
  readonly rootKey: () => Uint8Array | null;
  /** Whether a secret is stored at `path` (a write there needs create if not, update if so). */
  readonly secretExists: (path: string) => Promise<boolean>;
  /** Whether this node leads now (a follower's state may lag the leader's by a few entries). */
  readonly isLeader: () => boolean;
  /**
   * Resolves once this node has applied everything committed when it was called (a ReadIndex
   * round). A follower asks before it refuses a token it does not know: one created a moment ago
   * through the leader, or through this node (which answers once the leader applied it), may not
   * be applied here yet.
   */
  readonly catchUp: (context: RequestContext) => Promise<void>;
  readonly backoff: TokenBackoff;
  readonly refusals: RefusalMetrics;
  /**
   * Spends one use of the caller's use-limited token on the leader and answers the uses left;
   * TOKEN_INVALID when none is left.
   */
  readonly consumeTokenUse: (context: RequestContext) => Promise<number>;
  readonly now?: () => number;
}

export class Authorizer {
  private readonly now: () => number;
  private readonly tokenKey = new RootDerivedKey(deriveTokenKey);
  private readonly tokenHashes = new TokenHashMemo(tokenHash);

  constructor(private readonly options: AuthorizerOptions) {
    this.now = options.now ?? Date.now;
  }

  interceptor(): Interceptor {
    return async (context, request, next) => {
      await this.check(context, request);
      return next();
    };
  }

  /** Refuses the call unless the caller may make it (PERMISSION_DENIED, TOKEN_INVALID, SEALED). */
  async check(context: RequestContext, request: unknown): Promise<void> {
    try {
      await this.checkPermission(context, request);
    } catch (error) {
      this.options.refusals.note(error);
      throw error;
    }
  }

  /**
   * The caller of a call that passed check(), as checked (with its token's uses left after this
   * call's), for handlers that decide more (token operations).
   */
  async caller(context: RequestContext): Promise<Caller> {
    return checkedCaller(context) ?? this.resolveCaller(context);
  }

  /**
   * Spends one use of the caller's use-limited token for this call (once, whatever the retries),
   * on the node where the call is about to run. Nothing for a token without a use limit.
   */
  async spendUse(context: RequestContext): Promise<void> {
    const caller = checkedCaller(context);
    const token = caller?.token;
    if (caller === null || token === null || token === undefined || token.usesLeft === null) return;
    if (context.authorization.tokenUseSpent) return;
    const usesLeft = await this.options.consumeTokenUse(context);
    context.authorization.tokenUseSpent = true;
    context.authorization.caller = { ...caller, token: { ...token, usesLeft } };
  }

  private async resolveCaller(context: RequestContext): Promise<Caller> {
    let records = await this.options.view.records();
    const { token, identity } = context;
    const hash = token !== null && isWellFormedToken(token) ? this.hashOf(token) : null;
    if (
      hash !== null &&
      !records.tokens.has(hash) &&
      !this.options.isLeader() &&
      !records.disabledIdentities.has(identity)
    ) {
      // A token this follower holds no record of may have been created a moment ago and not be
      // applied here yet: catch up, then look again. Not for an identity in its brute-force
      // backoff (guesses must not cost a round to the leader each); when this node cannot catch
      // up (no leader, the deadline), the token is refused as it stands.
      this.options.backoff.check(identity);
      await this.options.catchUp(context).catch(() => undefined);
      records = await this.options.view.records();
    }
    return this.resolve(records, context, hash);
  }

  /** Refuses unless `caller` has `capability` (and sudo, if asked) on `path`. */
  require(caller: Caller, path: string, capability: Capability, sudo = false): void {
    const decision = authorize(caller.policies, path, capability);
    if (!decision.allowed) throw denied(caller, capability, path, decision.reason);
    if (sudo) {
      const elevated = authorize(caller.policies, path, "sudo");
      if (!elevated.allowed) throw denied(caller, "sudo", path, elevated.reason);
    }
  }

  /**
   * For a running stream (Watch) about to be told something that names no path (its progress):
   * throws TOKEN_INVALID once its token is revoked or expired (IDENTITY_DISABLED once its identity
   * is), so the stream ends, as mayReadNow does.
   */
  checkCallerNow(context: RequestContext): void {
    if (!this.options.initialized()) return;
    this.resolve(this.options.view.recordsNow(), context, null, false);
  }

  /**
   * For a running stream (Watch): whether its caller may still read `path`, on the records as they
   * are now. Throws TOKEN_INVALID once its token is revoked or expired, so the stream ends.
   */
  mayReadNow(context: RequestContext, path: string): boolean {
    if (!this.options.initialized()) return true;
    // Not a presentation of the token by its caller: the backoff neither refuses nor counts it
    // (one revoked token ending many streams must not make the identity wait with its next one).
    const caller = this.resolve(this.options.view.recordsNow(), context, null, false);
    return authorize(caller.policies, path, "read").allowed;
  }

  /** Whether `names` are all within the policies of `caller` (root covers every policy). */
  covers(caller: Caller, names: readonly string[]): boolean {
    if (caller.policyNames.includes(rootPolicyName)) return true;
    return names.every((name) => caller.policyNames.includes(name));
  }

  /** The policies of `names` that exist (root is built in). */
  policiesOf(records: AccessRecords, names: readonly string[]): Policy[] {
    const found: Policy[] = [];
    for (const name of names) {
      if (name === rootPolicyName) found.push(rootPolicy);
      else {
        const policy = records.policies.get(name)?.policy;
        if (policy !== undefined) found.push(policy);
      }
    }
    return found;
  }

  /** The token record of `hash` if it and every ancestor is present and unexpired, else null. */
  validToken(records: AccessRecords, hash: string): TokenRecord | null {
    const now = this.now();
    const own = records.tokens.get(hash);
    let current = own;
    for (let depth = 0; current !== undefined; depth++) {
      if (depth > tokenDepthMax) return null;
      if (current.expiresAt !== 0 && now >= current.expiresAt) return null;
      if (current.parent === null) return own ?? null;
      current = records.tokens.get(current.parent);
    }
    return null;
  }

  /** Zeroes the token key and drops the tokens' hashes kept (the node sealed). */
  forgetKeys(): void {
    this.tokenKey.forget();
    this.tokenHashes.forget();
  }

  /** The keyed hash of a token (needs an unsealed node). */
  hashOf(token: string): string {
    const rootKey = this.options.rootKey();
    if (rootKey === null) {
      this.forgetKeys();
      throw new NodeError("SEALED", "this node is sealed, so it cannot check tokens");
    }
    return this.tokenHashes.of(this.tokenKey.of(rootKey), token);
  }

  private async checkPermission(context: RequestContext, request: unknown): Promise<void> {
    const permission = methodPermissions.get(context.method);
    if (permission === undefined) {
      throw new NodeError("PERMISSION_DENIED", `${context.method} is not open to clients`);
    }
    if (permission.kind === "peer") {
      if (context.forwardedBy === null)
        throw new NodeError("PERMISSION_DENIED", `${context.method} is for nodes, not clients`);
      return;
    }
    if (permission.kind === "open" || !this.options.initialized()) return;
    if (this.options.rootKey() === null) {
      // A sealed leader asks the forwarding follower to try again (leadership is moving).
      if (context.forwardedBy !== null)
        throw new NodeError(
          "LEADER_SEALED",
          "the leader is sealed; leadership is moving to an unsealed node",
        );
      throw new NodeError("SEALED", "this node is sealed: unseal it to serve requests");
    }
    const caller = await this.resolveCaller(context);
    context.authorization.caller = caller;
    if (permission.kind === "path") {
      const fields = (typeof request === "object" && request !== null ? request : {}) as Record<
        string,
        unknown
      >;
      const path = permission.path(fields);
      let capability: Capability;
      if (permission.capability === "write") {
        capability = (await this.options.secretExists(path)) ? "update" : "create";
        // A follower may not have applied the write that created (or the delete that removed) the
        // secret yet: there either capability lets the call go on, and the leader, which forwards
        // nothing, decides on its own state.
        if (context.forwardedBy === null && !this.options.isLeader()) {
          const other: Capability = capability === "update" ? "create" : "update";
          if (
            !authorize(caller.policies, path, capability).allowed &&
            authorize(caller.policies, path, other).allowed
          )
            capability = other;
        }
      } else capability = permission.capability;
      this.require(caller, path, capability, permission.sudo);
    }
  }

  /**
   * `hash`: the token's keyed hash when the caller computed it already (it is an HMAC per call).
   * `presented`: the caller presents the token now (a call), so the brute-force backoff applies.
   */
  private resolve(
    records: AccessRecords,
    context: RequestContext,
    hash: string | null = null,
    presented = true,
  ): Caller {
    const { identity, token } = context;
    const disabled = records.disabledIdentities.get(identity);
    if (disabled !== undefined) {
      throw new NodeError(
        "IDENTITY_DISABLED",
        `${identity} was disabled at ${new Date(disabled.disabledAt).toISOString()}: an operator can enable it again`,
        { auditDetail: `disabled by ${disabled.disabledBy}: ${disabled.reason}` },
      );
    }
    if (token === null) {
      const policyNames = boundPolicyNames(records, identity);
      return {
        identity,
        tokenHash: null,
        token: null,
        policyNames,
        policies: this.policiesOf(records, policyNames),
      };
    }
    if (presented) this.options.backoff.check(identity);
    const wellFormed = isWellFormedToken(token);
    const keyedHash = wellFormed ? (hash ?? this.hashOf(token)) : "";
    const record = wellFormed ? this.validToken(records, keyedHash) : null;
    if (record === null) {
      if (presented) this.options.backoff.failed(identity);
      throw new NodeError(
        "TOKEN_INVALID",
        wellFormed
          ? "the token is not valid: unknown, expired or revoked"
          : 'the authorization metadata is not "Bearer " and a strongroom token',
      );
    }
    // A token bound to identities is no token at all from another certificate: refused as an
    // invalid one (and counted as a guess), so a stolen token is worth nothing elsewhere.
    const bound = record.boundIdentities;
    if (bound !== undefined && !bound.some((pattern) => bindingCovers(pattern, identity))) {
      if (presented) this.options.backoff.failed(identity);
      throw new NodeError("TOKEN_INVALID", `the token is not valid for the client identity ${identity}`, {
        auditDetail: `the token is bound to ${bound.join(", ")}`,
      });
    }
    if (presented) this.options.backoff.succeeded(identity);
    return {
      identity,
      tokenHash: keyedHash,
      token: record,
      policyNames: record.policies,
      policies: this.policiesOf(records, record.policies),
    };
  }
}

/** The policies an identity's bindings give it (exact and prefix bindings), sorted. */
export function boundPolicyNames(records: AccessRecords, identity: string): string[] {
  const names = new Set<string>();
  for (const binding of records.bindings.values()) {
    if (bindingCovers(binding.identity, identity)) for (const name of binding.policies) names.add(name);
  }
  return [...names].sort();
}

/** The caller that check() put on the call's context (only the authorizer puts one there). */
export function checkedCaller(context: RequestContext): Caller | null {
  return context.authorization.caller as Caller | null;
}

function denied(caller: Caller, capability: string, path: string, why: string): NodeError {
  // The client learns what was refused, never which policies exist or what they say.
  return new NodeError("PERMISSION_DENIED", `${caller.identity} may not ${capability} ${path}`, {
    auditDetail: why,
  });
}
