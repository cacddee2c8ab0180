// strongroom.v1.Access: policies, identity bindings, tokens and token roles. Changes run on the
// leader and are proposed as records of the access areas (server/access/access-records.ts),
// encrypted by the barrier like any secret; every node's access view takes them as they apply.
// Reads wait for a linearizable read barrier, so a client sees its own changes on any node. Which
// calls a caller may make is decided by the authorizer; the token rules beyond it (a new token's
// policies within the creator's or its role's, self-service on one's own token) are here.

import {
  AccessService,
  type AccessWriteResponse,
  type BindIdentityRequest,
  type CapabilitiesRequest,
  type CapabilitiesResponse,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type IdentityBinding,
  type ListBindingsResponse,
  type ListPoliciesResponse,
  type ListTokenRolesResponse,
  type PolicyDocument,
  type PolicyRequest,
  type RenewTokenRequest,
  type TokenAccessorRequest,
  type TokenInfo,
  type TokenRole,
  type TokenRoleRequest,
  type UnbindIdentityRequest,
  type WritePolicyRequest,
} from "../../proto/gen/strongroom/v1/access.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { StateError } from "../../storage/state/index.js";
import {
  accessAreas,
  bindingCovers,
  bindingRecordName,
  checkIdentityPattern,
  encodeRecord,
  rootTokenRecord,
  type TokenRecord,
  type TokenRoleRecord,
} from "../access/access-records.js";
import type { AccessRecords, AccessView } from "../access/access-view.js";
import {
  type Authorizer,
  boundPolicyNames,
  type Caller,
  rootPolicyName,
  tokenDepthMax,
} from "../access/authorizer.js";
import { checkAccessor, newAccessor, newToken } from "../access/token-ids.js";
import type { NodeConfig } from "../config.js";
import { formatDuration } from "../durations.js";
import { NodeError } from "../errors.js";
import { requireLeaseRoom } from "../leases/lease-manager.js";
import { authorize, capabilities, PolicyError, parsePolicy } from "../policy/policy.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { RequestContext } from "../request.js";
import { checkRoleName } from "../role-name.js";
import type { SealKeeper } from "../seal-keeper.js";
import type { SystemRecords } from "../system-records.js";
import { type AnyApiMethod, method, readMethod } from "./api-method.js";
import { requireServing } from "./secrets-api.js";

export interface AccessApiParts {
  readonly records: SystemRecords;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
  readonly view: AccessView;
  readonly authorizer: Authorizer;
  readonly limits: NodeConfig["auth"] & { readonly leasesPerIdentityMax: number };
  /**
   * Whether every member understands token roles (peerFeatures.tokenRoles): until then a role's
   * record would stop an older member that applies it.
   */
  readonly tokenRolesUsable: () => boolean;
  /**
   * Whether every member understands tokens bound to identities (peerFeatures.tokenBinding): an
   * older member would ignore the binding and take the token from any certificate.
   */
  readonly tokenBindingUsable: () => boolean;
}

export function accessMethods(api: AccessApi, keeper: SealKeeper): Record<string, AnyApiMethod> {
  const service = AccessService;
  const serving = () => requireServing(keeper, null);
  return {
    writePolicy: method(service.writePolicy, "leader", (r, c) => api.writePolicy(r, c), serving),
    readPolicy: readMethod(service.readPolicy, (r, c) => api.readPolicy(r, c), serving),
    listPolicies: readMethod(service.listPolicies, (_r, c) => api.listPolicies(c), serving),
    deletePolicy: method(service.deletePolicy, "leader", (r, c) => api.deletePolicy(r, c), serving),
    bindIdentity: method(service.bindIdentity, "leader", (r, c) => api.bindIdentity(r, c), serving),
    unbindIdentity: method(service.unbindIdentity, "leader", (r, c) => api.unbindIdentity(r, c), serving),
    listBindings: readMethod(service.listBindings, (_r, c) => api.listBindings(c), serving),
    createToken: method(service.createToken, "leader", (r, c) => api.createToken(r, c), serving),
    writeTokenRole: method(service.writeTokenRole, "leader", (r, c) => api.writeTokenRole(r, c), serving),
    readTokenRole: readMethod(service.readTokenRole, (r, c) => api.readTokenRole(r, c), serving),
    listTokenRoles: readMethod(service.listTokenRoles, (_r, c) => api.listTokenRoles(c), serving),
    deleteTokenRole: method(service.deleteTokenRole, "leader", (r, c) => api.deleteTokenRole(r, c), serving),
    renewToken: method(service.renewToken, "leader", (r, c) => api.renewToken(r, c), serving),
    revokeToken: method(service.revokeToken, "leader", (r, c) => api.revokeToken(r, c), serving),
    lookupToken: readMethod(service.lookupToken, (r, c) => api.lookupToken(r, c), serving),
    capabilities: readMethod(service.capabilities, (r, c) => api.capabilities(r, c), serving),
    consumeTokenUse: method(service.consumeTokenUse, "leader", (_r, c) => api.consumeTokenUse(c), serving),
  };
}

const displayNamePattern = /^[\x20-\x7e]{0,64}$/;
const policiesPerBindingMax = 64;
/** Paths one Capabilities call may ask about, and the longest path it takes. */
export const capabilitiesLimits = { pathsMax: 64, pathCharactersMax: 1024 } as const;
/** Token roles a cluster holds, and the policies one role may allow. */
export const tokenRoleLimits = { rolesMax: 1000, allowedPoliciesMax: 64 } as const;
/** Identities (or prefixes) one token or role may be bound to. */
const boundIdentitiesMax = 16;
/** Policies a "no policy named" error names before it counts the rest. */
const missingPoliciesNamedMax = 10;

export class AccessApi {
  /** Use spends in progress on this leader, by token hash. */
  private readonly spending = new Map<string, Promise<void>>();

  constructor(private readonly parts: AccessApiParts) {}

  async writePolicy(request: WritePolicyRequest, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    if (request.name === rootPolicyName)
      throw new NodeError("INVALID_ARGUMENT", "the root policy is built in and cannot be written");
    const bytes = Buffer.byteLength(request.document);
    if (bytes > this.parts.limits.policyBytesMax) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `the policy document is ${bytes} bytes; the limit is ${this.parts.limits.policyBytesMax}`,
      );
    }
    let name: string;
    try {
      name = parsePolicy(request.document, request.name).name;
    } catch (error) {
      if (error instanceof PolicyError) throw new NodeError("INVALID_ARGUMENT", error.message);
      throw error;
    }
    if (name !== request.name) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `the document names policy ${name}, but the request writes ${JSON.stringify(request.name)}`,
      );
    }
    const records = await this.parts.view.records();
    if (!records.policies.has(name) && records.policies.size >= this.parts.limits.policiesMax) {
      throw new NodeError(
        "RESOURCE_EXHAUSTED",
        `the cluster holds its limit of ${this.parts.limits.policiesMax} policies`,
      );
    }
    return {
      revision: await this.putRecord(accessAreas.policy, name, encodeRecord({ document: request.document })),
    };
  }

  async readPolicy(request: PolicyRequest, context: RequestContext): Promise<PolicyDocument> {
    const records = await this.linearizableRecords(context);
    if (request.name === rootPolicyName) {
      return { name: rootPolicyName, document: "# built in: every capability on every path\n", tenant: "" };
    }
    const found = records.policies.get(request.name);
    if (found === undefined)
      throw new NodeError("NOT_FOUND", `no policy named ${JSON.stringify(request.name)}`);
    return { name: request.name, document: found.document, tenant: found.policy.tenant ?? "" };
  }

  async listPolicies(context: RequestContext): Promise<ListPoliciesResponse> {
    const records = await this.linearizableRecords(context);
    return { names: [rootPolicyName, ...[...records.policies.keys()].sort()] };
  }

  async deletePolicy(request: PolicyRequest, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    if (request.name === rootPolicyName)
      throw new NodeError("INVALID_ARGUMENT", "the root policy is built in and cannot be deleted");
    const records = await this.parts.view.records();
    if (!records.policies.has(request.name))
      throw new NodeError("NOT_FOUND", `no policy named ${JSON.stringify(request.name)}`);
    // Bindings and tokens that name it keep the name; it grants nothing until written again.
    return { revision: await this.deleteRecord(accessAreas.policy, request.name) };
  }

  async bindIdentity(request: BindIdentityRequest, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    const identity = checkIdentityPattern(request.identity);
    const policies = [...new Set(request.policies)].sort();
    if (policies.length === 0 || policies.length > policiesPerBindingMax) {
      throw new NodeError("INVALID_ARGUMENT", `a binding names 1 to ${policiesPerBindingMax} policies`);
    }
    this.requireExisting(await this.parts.view.records(), policies);
    const record = encodeRecord({ identity, policies });
    return { revision: await this.putRecord(accessAreas.binding, bindingRecordName(identity), record) };
  }

  async unbindIdentity(
    request: UnbindIdentityRequest,
    context: RequestContext,
  ): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    const name = bindingRecordName(checkIdentityPattern(request.identity));
    const records = await this.parts.view.records();
    if (!records.bindings.has(name))
      throw new NodeError("NOT_FOUND", `no binding for ${JSON.stringify(request.identity)}`);
    return { revision: await this.deleteRecord(accessAreas.binding, name) };
  }

  async listBindings(context: RequestContext): Promise<ListBindingsResponse> {
    const records = await this.linearizableRecords(context);
    const bindings: IdentityBinding[] = [...records.bindings.values()]
      .map((binding) => ({ identity: binding.identity, policies: [...binding.policies] }))
      .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
    return { bindings };
  }

  async createToken(request: CreateTokenRequest, context: RequestContext): Promise<CreateTokenResponse> {
    requireServing(this.parts.keeper, context);
    const { authorizer, limits } = this.parts;
    const caller = await authorizer.caller(context);
    // As in Vault: a child would outlive its parent's use limit (its own uses are its own).
    if (caller.token !== null && caller.token.usesLeft !== null) {
      throw new NodeError(
        "PERMISSION_DENIED",
        "a token with a use limit cannot create tokens: their uses would not count against it",
      );
    }
    const records = await this.parts.view.records();
    const shape =
      request.role === ""
        ? this.shapeFromCaller(request, caller, records)
        : this.shapeFromRole(request, caller, records);
    const { policies, orphan, maxTtlMs, ttlMs, boundIdentities } = shape;
    if (boundIdentities.length > 0) this.requireTokenBinding();
    if (!displayNamePattern.test(request.displayName)) {
      throw new NodeError("INVALID_ARGUMENT", "a display name is at most 64 printable ASCII characters");
    }
    if (maxTtlMs > limits.tokenMaxTtlMs) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a max TTL of ${formatDuration(maxTtlMs)} is above this cluster's limit of ${formatDuration(limits.tokenMaxTtlMs)} (auth.tokenMaxTtlMs)`,
      );
    }
    if (ttlMs > maxTtlMs)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a TTL of ${formatDuration(ttlMs)} is above the token's max TTL of ${formatDuration(maxTtlMs)}`,
      );
    if (!orphan && depthOf(records, caller.tokenHash) >= tokenDepthMax) {
      throw new NodeError("INVALID_ARGUMENT", `a token may have at most ${tokenDepthMax} ancestors`);
    }
    // A token is a lease of its creator's: one identity holds at most leases.perIdentityMax.
    requireLeaseRoom(records, caller.identity, limits.leasesPerIdentityMax, Date.now());
    if (records.tokens.size >= limits.tokensMax) {
      throw new NodeError("RESOURCE_EXHAUSTED", `the cluster holds its limit of ${limits.tokensMax} tokens`);
    }
    const now = Date.now();
    const record: TokenRecord = {
      accessor: newAccessor(),
      policies,
      displayName: request.displayName,
      createdBy: caller.identity,
      createdAt: now,
      expiresAt: now + ttlMs,
      maxExpiresAt: now + maxTtlMs,
      ttlMs,
      renewable: shape.renewable,
      parent: orphan ? null : caller.tokenHash,
      usesLeft: shape.numUses === 0 ? null : shape.numUses,
      // Only when used: records without them keep the shape older members wrote.
      ...(request.role === "" ? {} : { role: request.role }),
      ...(boundIdentities.length === 0 ? {} : { boundIdentities }),
    };
    const token = newToken();
    await this.putRecord(accessAreas.token, authorizer.hashOf(token), encodeRecord(record));
    return { token, info: this.info(records, record) };
  }

  /**
   * A token without a role: within the caller's own policies, a child of the caller's token;
   * more policies, or an orphan, need sudo on sys/tokens/create.
   */
  private shapeFromCaller(request: CreateTokenRequest, caller: Caller, records: AccessRecords): TokenShape {
    const { authorizer, limits } = this.parts;
    const policies =
      request.policies.length === 0 ? [...caller.policyNames] : [...new Set(request.policies)].sort();
    if (policies.length === 0) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        "a token needs at least one policy, and the caller has none to give it",
      );
    }
    this.requireExisting(records, policies);
    if (policies.includes(rootPolicyName) && !caller.policyNames.includes(rootPolicyName)) {
      throw new NodeError("PERMISSION_DENIED", `${caller.identity} may not create a root token`);
    }
    if (!authorizer.covers(caller, policies) || (request.orphan && caller.tokenHash !== null)) {
      authorizer.require(caller, "sys/tokens/create", "update", true);
    }
    const maxTtlMs = request.maxTtlMs === 0 ? limits.tokenMaxTtlMs : request.maxTtlMs;
    return {
      policies,
      orphan: request.orphan || caller.tokenHash === null,
      maxTtlMs,
      ttlMs: request.ttlMs === 0 ? Math.min(limits.tokenTtlMs, maxTtlMs) : request.ttlMs,
      renewable: request.renewable,
      numUses: request.numUses,
      boundIdentities: bindingWithinCaller(caller, checkBoundIdentities(request.boundIdentities)),
    };
  }

  /**
   * A token against a role: the caller needs update on sys/tokens/create/<role>, not the policies
   * or sudo; the role bounds the policies, the lifetimes, the uses and whether it is an orphan. A
   * request may ask for less than the role allows, never more.
   */
  private shapeFromRole(request: CreateTokenRequest, caller: Caller, records: AccessRecords): TokenShape {
    const { authorizer, limits } = this.parts;
    const name = checkRoleName(request.role);
    // Before the role is looked up: a caller not granted it learns nothing of it.
    authorizer.require(caller, `sys/tokens/create/${name}`, "update");
    const role = records.tokenRoles.get(name);
    if (role === undefined) throw new NodeError("NOT_FOUND", `no token role named ${name}`);
    const policies =
      request.policies.length === 0 ? [...role.allowedPolicies] : [...new Set(request.policies)].sort();
    const outside = policies.filter((policy) => !role.allowedPolicies.includes(policy));
    if (outside.length > 0) {
      throw new NodeError(
        "PERMISSION_DENIED",
        `the token role ${name} does not allow ${outside.length === 1 ? "policy" : "policies"} ${outside
          .slice(0, missingPoliciesNamedMax)
          .map((policy) => JSON.stringify(policy.slice(0, 80)))
          .join(", ")}`,
      );
    }
    // A role may name a policy deleted since it was written.
    this.requireExisting(records, policies);
    if (request.orphan && !role.orphan)
      throw new NodeError("INVALID_ARGUMENT", `the token role ${name} makes child tokens, not orphans`);
    if (request.renewable && !role.renewable)
      throw new NodeError("INVALID_ARGUMENT", `the token role ${name} makes tokens that cannot be renewed`);
    // The cluster's limit may have been lowered since the role was written.
    const roleMaxTtlMs =
      role.maxTtlMs === 0 ? limits.tokenMaxTtlMs : Math.min(role.maxTtlMs, limits.tokenMaxTtlMs);
    if (request.maxTtlMs > roleMaxTtlMs)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a max TTL of ${formatDuration(request.maxTtlMs)} is above the token role ${name}'s ${formatDuration(roleMaxTtlMs)}`,
      );
    const maxTtlMs = request.maxTtlMs === 0 ? roleMaxTtlMs : request.maxTtlMs;
    if (role.numUses > 0 && request.numUses > role.numUses)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `${request.numUses} uses is more than the token role ${name} allows (${role.numUses})`,
      );
    return {
      policies,
      orphan: role.orphan || caller.tokenHash === null,
      maxTtlMs,
      ttlMs:
        request.ttlMs !== 0
          ? request.ttlMs
          : Math.min(role.ttlMs === 0 ? limits.tokenTtlMs : role.ttlMs, maxTtlMs),
      renewable: role.renewable,
      numUses: request.numUses === 0 ? role.numUses : request.numUses,
      boundIdentities: this.roleBinding(name, role, request.boundIdentities),
    };
  }

  /**
   * What a token made against `role` is bound to: the role's identities, or what the request asks
   * when the role binds none (a request cannot move a role's binding elsewhere).
   */
  private roleBinding(name: string, role: TokenRoleRecord, asked: readonly string[]): string[] {
    if (role.boundIdentities.length === 0) return checkBoundIdentities(asked);
    if (asked.length > 0)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `the token role ${name} binds its tokens to ${role.boundIdentities.join(", ")}: a request cannot bind them elsewhere`,
      );
    return [...role.boundIdentities];
  }

  async writeTokenRole(request: TokenRole, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    const { limits } = this.parts;
    const name = checkRoleName(request.name);
    const allowedPolicies = [...new Set(request.allowedPolicies)].sort();
    if (allowedPolicies.length === 0 || allowedPolicies.length > tokenRoleLimits.allowedPoliciesMax) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a token role allows 1 to ${tokenRoleLimits.allowedPoliciesMax} policies`,
      );
    }
    if (allowedPolicies.includes(rootPolicyName))
      throw new NodeError("INVALID_ARGUMENT", "a token role cannot allow the root policy");
    const records = await this.parts.view.records();
    this.requireExisting(records, allowedPolicies);
    if (request.maxTtlMs > limits.tokenMaxTtlMs) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a max TTL of ${formatDuration(request.maxTtlMs)} is above this cluster's limit of ${formatDuration(limits.tokenMaxTtlMs)} (auth.tokenMaxTtlMs)`,
      );
    }
    const maxTtlMs = request.maxTtlMs === 0 ? limits.tokenMaxTtlMs : request.maxTtlMs;
    if (request.ttlMs > maxTtlMs) {
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a TTL of ${formatDuration(request.ttlMs)} is above the role's max TTL of ${formatDuration(maxTtlMs)}`,
      );
    }
    if (!records.tokenRoles.has(name) && records.tokenRoles.size >= tokenRoleLimits.rolesMax) {
      throw new NodeError(
        "RESOURCE_EXHAUSTED",
        `the cluster holds its limit of ${tokenRoleLimits.rolesMax} token roles`,
      );
    }
    const boundIdentities = checkBoundIdentities(request.boundIdentities);
    this.requireTokenRoles();
    if (boundIdentities.length > 0) this.requireTokenBinding();
    const role: TokenRoleRecord = {
      name,
      allowedPolicies,
      ttlMs: request.ttlMs,
      maxTtlMs: request.maxTtlMs,
      renewable: request.renewable,
      orphan: request.orphan,
      numUses: request.numUses,
      boundIdentities,
    };
    return { revision: await this.putRecord(accessAreas.tokenRole, name, encodeRecord(role)) };
  }

  async readTokenRole(request: TokenRoleRequest, context: RequestContext): Promise<TokenRole> {
    const records = await this.linearizableRecords(context);
    const name = checkRoleName(request.name);
    const role = records.tokenRoles.get(name);
    if (role === undefined) throw new NodeError("NOT_FOUND", `no token role named ${name}`);
    return {
      ...role,
      allowedPolicies: [...role.allowedPolicies],
      boundIdentities: [...role.boundIdentities],
    };
  }

  async listTokenRoles(context: RequestContext): Promise<ListTokenRolesResponse> {
    const records = await this.linearizableRecords(context);
    return { names: [...records.tokenRoles.keys()].sort() };
  }

  async deleteTokenRole(request: TokenRoleRequest, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    const name = checkRoleName(request.name);
    const records = await this.parts.view.records();
    if (!records.tokenRoles.has(name)) throw new NodeError("NOT_FOUND", `no token role named ${name}`);
    return { revision: await this.deleteRecord(accessAreas.tokenRole, name) };
  }

  /** Refuses a bound token or role while a member may not understand bindings (an older version). */
  private requireTokenBinding(): void {
    if (!this.parts.tokenBindingUsable())
      throw new NodeError(
        "UPGRADE_PENDING",
        "not every member of the cluster has said it understands tokens bound to identities (a member running an older version, or one not heard from since this leader took over): upgrade or start every member, then try again",
      );
  }

  /** Refuses a role's record while a member may not understand its area (an older version). */
  private requireTokenRoles(): void {
    if (!this.parts.tokenRolesUsable())
      throw new NodeError(
        "UPGRADE_PENDING",
        "not every member of the cluster has said it understands token roles (a member running an older version, or one not heard from since this leader took over): upgrade or start every member, then try again",
      );
  }

  async renewToken(request: RenewTokenRequest, context: RequestContext): Promise<TokenInfo> {
    requireServing(this.parts.keeper, context);
    const { hash, records } = await this.target(request.accessor, "update", context);
    return this.info(records, await this.renewTokenRecord(hash, request.incrementMs));
  }

  /**
   * Extends a token by `incrementMs` from now (0: its own TTL), never past its hard limit, on the
   * record as it stands (a use spent meanwhile stays spent).
   */
  async renewTokenRecord(hash: string, incrementMs: number): Promise<TokenRecord> {
    return this.rewriteToken(
      hash,
      () =>
        new NodeError(
          "NOT_FOUND",
          "no valid token to renew: it was revoked, it expired or its uses are spent",
        ),
      (record) => {
        if (!record.renewable) throw new NodeError("NOT_RENEWABLE", "the token is not renewable");
        const now = Date.now();
        const increment = incrementMs === 0 ? record.ttlMs : incrementMs;
        const expiresAt =
          record.maxExpiresAt === 0 ? now + increment : Math.min(now + increment, record.maxExpiresAt);
        return { ...record, expiresAt };
      },
    );
  }

  /** Revokes a token: every node refuses it, and its descendants, once the deletion applies. */
  async revokeToken(request: TokenAccessorRequest, context: RequestContext): Promise<AccessWriteResponse> {
    requireServing(this.parts.keeper, context);
    const { hash } = await this.target(request.accessor, "delete", context);
    return { revision: (await this.revokeTokenHash(hash)).revision };
  }

  /**
   * Revokes the token of `hash` and its descendants; answers the index from which every node
   * refuses them all and the accessors revoked.
   */
  async revokeTokenHash(hash: string): Promise<{ revision: number; accessors: string[] }> {
    const records = await this.parts.view.records();
    const accessor = records.tokens.get(hash)?.accessor;
    const revision = await this.deleteRecord(accessAreas.token, hash);
    // Descendants are refused already (a token is valid only with its whole parent chain); their
    // records go now, or at the next tidy if this leader stops first.
    const accessors = accessor === undefined ? [] : [accessor];
    for (const descendant of descendantsOf(records, hash)) {
      const descendantAccessor = records.tokens.get(descendant)?.accessor;
      if (descendantAccessor !== undefined) accessors.push(descendantAccessor);
      await this.deleteRecord(accessAreas.token, descendant).catch(() => {});
    }
    return { revision, accessors };
  }

  async lookupToken(request: TokenAccessorRequest, context: RequestContext): Promise<TokenInfo> {
    await this.linearizableRecords(context);
    const { record, records } = await this.target(request.accessor, "read", context);
    return this.info(records, record);
  }

  /**
   * What the caller, the token of `accessor` or the identity `identity` (by its bindings) may do
   * on each path asked: the capabilities its policies grant there, as the authorizer decides them
   * (an explicit deny leaves none). About another, it needs what a lookup of it needs.
   */
  async capabilities(request: CapabilitiesRequest, context: RequestContext): Promise<CapabilitiesResponse> {
    const { authorizer } = this.parts;
    if (request.paths.length === 0 || request.paths.length > capabilitiesLimits.pathsMax)
      throw new NodeError("INVALID_ARGUMENT", `ask about 1 to ${capabilitiesLimits.pathsMax} paths`);
    const tooLong = request.paths.find((path) => path.length > capabilitiesLimits.pathCharactersMax);
    if (tooLong !== undefined)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a path asked about is at most ${capabilitiesLimits.pathCharactersMax} characters: got ${tooLong.length}`,
      );
    if (request.accessor !== "" && request.identity !== "")
      throw new NodeError("INVALID_ARGUMENT", "ask about a token (accessor) or an identity, not both");
    const records = await this.linearizableRecords(context);
    const caller = await authorizer.caller(context);
    let policyNames: readonly string[];
    let identityDisabled = false;
    if (request.accessor !== "") {
      policyNames = (await this.target(request.accessor, "read", context)).record.policies;
    } else if (request.identity !== "") {
      const identity = checkIdentityPattern(request.identity);
      if (identity.endsWith("*"))
        throw new NodeError("INVALID_ARGUMENT", "ask about one identity, not a prefix of identities");
      authorizer.require(caller, "sys/identities", "read");
      identityDisabled = records.disabledIdentities.has(identity);
      policyNames = boundPolicyNames(records, identity);
    } else policyNames = caller.policyNames;
    const policies = authorizer.policiesOf(records, policyNames);
    return {
      paths: request.paths.map((path) => ({
        path,
        capabilities: identityDisabled
          ? []
          : capabilities.filter(
              (capability) => capability !== "deny" && authorize(policies, path, capability).allowed,
            ),
      })),
      policies: [...policyNames],
      identityDisabled,
    };
  }

  /**
   * Spends one use of the caller's use-limited token (on the leader): the record is rewritten with
   * one use less, or deleted with its last use, as a check-and-set on the record read, so two
   * nodes (or an old and a new leader) can never spend the same use twice.
   */
  async consumeTokenUse(context: RequestContext): Promise<TokenInfo> {
    requireServing(this.parts.keeper, context);
    const { authorizer, view } = this.parts;
    if (context.token === null) throw new NodeError("INVALID_ARGUMENT", "no token was presented");
    const hash = authorizer.hashOf(context.token);
    const spend = async (): Promise<TokenInfo> => {
      const spent = await this.rewriteToken(
        hash,
        () => new NodeError("TOKEN_INVALID", "the token is not valid: unknown, expired, revoked or used up"),
        (record) => (record.usesLeft === null ? record : { ...record, usesLeft: record.usesLeft - 1 }),
      );
      return this.info(await view.records(), spent);
    };
    // One spend at a time per token on this leader; the check-and-set covers everything else.
    const previous = this.spending.get(hash) ?? Promise.resolve();
    const running = previous.then(spend, spend);
    const settled = running.then(
      () => {},
      () => {},
    );
    this.spending.set(hash, settled);
    settled.then(() => {
      if (this.spending.get(hash) === settled) this.spending.delete(hash);
    });
    return running;
  }

  /** A new root token (GenerateRoot, once a threshold of shares authorized it). */
  async issueRootToken(createdBy: string): Promise<string> {
    requireServing(this.parts.keeper, null);
    const token = newToken();
    const record = rootTokenRecord(createdBy, newAccessor(), Date.now());
    await this.putRecord(accessAreas.token, this.parts.authorizer.hashOf(token), encodeRecord(record));
    return token;
  }

  /** Removes expired tokens and tokens whose parent is gone (run by the leader now and then). */
  async tidy(): Promise<number> {
    const records = await this.parts.view.records();
    let removed = 0;
    for (const hash of [...records.tokens.keys()]) {
      if (this.parts.authorizer.validToken(records, hash) !== null) continue;
      // Only the record as it was read: one renewed or replaced since stays.
      const digest = this.parts.view.digestOf(accessAreas.token, hash);
      if (digest === null) continue;
      try {
        await this.parts.records.delete(accessAreas.token, hash, digest);
        removed++;
      } catch (error) {
        if (!(error instanceof StateError && ["CAS_MISMATCH", "NOT_FOUND"].includes(error.code))) throw error;
      }
    }
    return removed;
  }

  /** The caller's own token (empty accessor), or the token of `accessor` if the caller may touch it. */
  private async target(
    accessor: string,
    capability: "read" | "update" | "delete",
    context: RequestContext,
  ): Promise<{ hash: string; record: TokenRecord; records: AccessRecords }> {
    const { authorizer } = this.parts;
    const caller: Caller = await authorizer.caller(context);
    const records = await this.parts.view.records();
    if (accessor === "") {
      if (caller.tokenHash === null || caller.token === null) {
        throw new NodeError("INVALID_ARGUMENT", "no token was presented: present one, or name an accessor");
      }
      return { hash: caller.tokenHash, record: caller.token, records };
    }
    checkAccessor(accessor);
    authorizer.require(caller, `sys/tokens/accessors/${accessor}`, capability);
    const hash = records.accessors.get(accessor);
    // An expired token, or one whose parent was revoked, is gone already: it cannot be renewed back.
    const record = hash === undefined ? null : authorizer.validToken(records, hash);
    if (hash === undefined || record === null)
      throw new NodeError("NOT_FOUND", `no valid token has accessor ${accessor}`);
    return { hash, record, records };
  }

  private info(records: AccessRecords, record: TokenRecord): TokenInfo {
    const tenants = new Set(record.policies.map((name) => records.policies.get(name)?.policy.tenant ?? null));
    const [tenant] = [...tenants];
    return {
      accessor: record.accessor,
      policies: [...record.policies],
      displayName: record.displayName,
      createdBy: record.createdBy,
      createdAtMs: record.createdAt,
      expiresAtMs: record.expiresAt,
      maxExpiresAtMs: record.maxExpiresAt,
      ttlMs: record.ttlMs,
      renewable: record.renewable,
      orphan: record.parent === null,
      usesLeft: record.usesLeft ?? 0,
      useLimited: record.usesLeft !== null,
      tenant: tenants.size === 1 && typeof tenant === "string" ? tenant : "",
      role: record.role ?? "",
      boundIdentities: [...(record.boundIdentities ?? [])],
    };
  }

  private requireExisting(records: AccessRecords, policies: readonly string[]): void {
    const missing = policies.filter((name) => name !== rootPolicyName && !records.policies.has(name));
    if (missing.length > 0) {
      // The first few by name, each cut as validatePolicyName cuts it: a request may name hundreds
      // (or one of a megabyte), and the message goes to logs, terminals and the audit trail.
      const shown = missing
        .slice(0, missingPoliciesNamedMax)
        .map((name) => JSON.stringify(name.slice(0, 80)));
      const more = missing.length - shown.length;
      throw new NodeError(
        "NOT_FOUND",
        `no ${missing.length === 1 ? "policy" : "policies"} named ${shown.join(", ")}${more > 0 ? ` and ${more} more` : ""}`,
      );
    }
  }

  private async linearizableRecords(context: RequestContext): Promise<AccessRecords> {
    requireServing(this.parts.keeper, context);
    await this.parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
    return this.parts.view.records();
  }

  /**
   * Rewrites a valid token's record with `change` as a check-and-set on the record read, read
   * again and retried when another change came first, so no two changes (two spends, a spend and
   * a renewal) are ever applied to the same record; a record whose last use is spent is deleted.
   * `missing` is the error when the token is not valid (or its uses are spent already).
   */
  private async rewriteToken(
    hash: string,
    missing: () => NodeError,
    change: (record: TokenRecord) => TokenRecord,
  ): Promise<TokenRecord> {
    const { authorizer, view } = this.parts;
    for (let attempt = 1; ; attempt++) {
      const record = authorizer.validToken(await view.records(), hash);
      const digest = view.digestOf(accessAreas.token, hash);
      if (record === null || digest === null || record.usesLeft === 0) throw missing();
      const changed = change(record);
      if (changed === record) return record;
      try {
        if (changed.usesLeft === 0) await this.parts.records.delete(accessAreas.token, hash, digest);
        else await this.putRecord(accessAreas.token, hash, encodeRecord(changed), digest);
        return changed;
      } catch (error) {
        if (!(error instanceof StateError && error.code === "CAS_MISMATCH") || attempt >= 5) throw error;
      }
    }
  }

  private putRecord(
    area: (typeof accessAreas)[keyof typeof accessAreas],
    name: string,
    plaintext: Uint8Array,
    ifDigest?: Uint8Array,
  ): Promise<number> {
    return this.parts.records.put(area, name, plaintext, ifDigest);
  }

  private deleteRecord(area: (typeof accessAreas)[keyof typeof accessAreas], name: string): Promise<number> {
    return this.parts.records.delete(area, name);
  }
}

/** What a new token will be, from its request and the caller's policies or its role. */
interface TokenShape {
  readonly policies: string[];
  readonly orphan: boolean;
  readonly maxTtlMs: number;
  readonly ttlMs: number;
  readonly renewable: boolean;
  /** 0: no limit. */
  readonly numUses: number;
  /** Empty: not bound. */
  readonly boundIdentities: string[];
}

/** Checks the identities (or prefixes) a token or role is bound to; sorted, once each. */
function checkBoundIdentities(asked: readonly string[]): string[] {
  if (asked.length > boundIdentitiesMax)
    throw new NodeError(
      "INVALID_ARGUMENT",
      `a token is bound to at most ${boundIdentitiesMax} identities or prefixes`,
    );
  return [...new Set(asked.map(checkIdentityPattern))].sort();
}

/**
 * What a token made without a role is bound to. A bound caller's tokens are bound within its own
 * binding (what it asks, or all of it), as Vault copies a parent's bound CIDRs to its children: a
 * stolen bound token must not mint one that works from any certificate. Orphans too (Vault's
 * escape it), though only sudo makes them. A role decides for its own tokens instead, as in Vault.
 */
function bindingWithinCaller(caller: Caller, asked: string[]): string[] {
  const callerBinding = caller.token?.boundIdentities ?? [];
  if (callerBinding.length === 0) return asked;
  if (asked.length === 0) return [...callerBinding];
  const outside = asked.filter((pattern) => !callerBinding.some((bound) => bindingCovers(bound, pattern)));
  if (outside.length > 0) {
    throw new NodeError(
      "PERMISSION_DENIED",
      `the caller's token is bound to ${callerBinding.join(", ")}: it cannot make tokens bound to ${outside.join(", ")}`,
    );
  }
  return asked;
}

function depthOf(records: AccessRecords, hash: string | null): number {
  let depth = 0;
  for (let current = hash; current !== null && depth <= tokenDepthMax; depth++) {
    current = records.tokens.get(current)?.parent ?? null;
  }
  return depth;
}

function descendantsOf(records: AccessRecords, root: string): string[] {
  const children = new Map<string, string[]>();
  for (const [hash, record] of records.tokens) {
    if (record.parent !== null) children.set(record.parent, [...(children.get(record.parent) ?? []), hash]);
  }
  const found: string[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift() as string;
    found.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}
