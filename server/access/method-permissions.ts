// What each API method needs, in one table: the policy path and capability it is checked against
// (secrets: the secret's path; operations on the cluster itself: a path under "sys/"), or "open"
// for the calls that must work before anyone can hold a token or whose own proof is the request
// (init; unseal, rekey and seal migration, authorized by key shares; seal status and cluster
// status, which name no secret), or "caller" for calls any valid caller may make and whose handler
// decides the rest (token operations). A method missing from the table is refused: new methods fail
// closed until they are given a line here. "peer" marks the calls one node makes of another.

import { validatePath, validatePrefix } from "../../storage/state/index.js";
import { NodeError } from "../errors.js";
import { type Capability, validatePolicyName } from "../policy/policy.js";
import { checkRoleName } from "../role-name.js";

export type Permission =
  | { readonly kind: "open" }
  /** Between nodes only: refused to clients. */
  | { readonly kind: "peer" }
  | { readonly kind: "caller" }
  | {
      readonly kind: "path";
      readonly path: (request: Record<string, unknown>) => string;
      /** "write": create when nothing is stored at the path yet, update otherwise. */
      readonly capability: Capability | "write";
      /** Also needs sudo on the same path. */
      readonly sudo: boolean;
    };

const open: Permission = { kind: "open" };
const caller: Permission = { kind: "caller" };

function on(
  path: (request: Record<string, unknown>) => string,
  capability: Capability | "write",
  sudo = false,
): Permission {
  return { kind: "path", path, capability, sudo };
}

// A malformed path is refused as such (INVALID_ARGUMENT) before it is checked against policies.
const requestPath = (request: Record<string, unknown>) => {
  const path = String(request.path ?? "");
  validatePath(path);
  return path;
};
const requestPrefix = (request: Record<string, unknown>) => {
  const prefix = String(request.prefix ?? "");
  if (prefix !== "") validatePrefix(prefix);
  return prefix;
};
// A malformed policy name is refused in the words of policy names, not of the path it maps to.
const policyPath = (request: Record<string, unknown>) => {
  try {
    validatePolicyName(request.name);
  } catch (error) {
    throw new NodeError("INVALID_ARGUMENT", (error as Error).message);
  }
  return `sys/policies/${request.name}`;
};
const fixed = (path: string) => () => path;
// A malformed role name is refused in the words of role names, before any policy check.
const tokenRolePath = (request: Record<string, unknown>) =>
  `sys/tokens/roles/${checkRoleName(String(request.name ?? ""))}`;

export const methodPermissions: ReadonlyMap<string, Permission> = new Map<string, Permission>([
  ["/strongroom.v1.Secrets/Put", on(requestPath, "write")],
  ["/strongroom.v1.Secrets/Get", on(requestPath, "read")],
  ["/strongroom.v1.Secrets/Delete", on(requestPath, "delete")],
  ["/strongroom.v1.Secrets/Undelete", on(requestPath, "update")],
  ["/strongroom.v1.Secrets/Destroy", on(requestPath, "destroy")],
  ["/strongroom.v1.Secrets/List", on(requestPrefix, "list")],
  ["/strongroom.v1.Secrets/GetMetadata", on(requestPath, "read")],
  ["/strongroom.v1.Secrets/UpdateMetadata", on(requestPath, "update")],
  ["/strongroom.v1.Secrets/History", on(requestPath, "read")],
  ["/strongroom.v1.Secrets/Watch", on(requestPrefix, "read")],
  // The report names paths under the prefix, as List does.
  ["/strongroom.v1.Secrets/Stale", on(requestPrefix, "list")],
  // A rotation writes a new version, as a Put does.
  ["/strongroom.v1.Secrets/Rotate", on(requestPath, "write")],
  // One node asks another for its reads, for a Stale report the client was authorized for.
  ["/strongroom.v1.Secrets/ReadTimes", { kind: "peer" }],

  ["/strongroom.v1.Sys/Init", open],
  ["/strongroom.v1.Sys/Unseal", open],
  ["/strongroom.v1.Sys/SealStatus", open],
  ["/strongroom.v1.Sys/Rekey", open],
  ["/strongroom.v1.Sys/MigrateSeal", open],
  ["/strongroom.v1.Sys/Seal", on(fixed("sys/seal"), "update", true)],
  ["/strongroom.v1.Sys/RotateKeyring", on(fixed("sys/rotate"), "update", true)],
  ["/strongroom.v1.Sys/RotateHsmKey", on(fixed("sys/seal/hsm-key"), "update", true)],
  // The shares are the proof, as for rekey: anyone may hand them in.
  ["/strongroom.v1.Sys/GenerateRoot", open],
  ["/strongroom.v1.Sys/AuditHash", on(fixed("sys/audit-hash"), "update")],
  ["/strongroom.v1.Sys/AuditKey", on(fixed("sys/audit-key"), "read", true)],

  ["/strongroom.v1.Cluster/Status", open],
  ["/strongroom.v1.Cluster/Members", open],
  ["/strongroom.v1.Cluster/AddMember", on(fixed("sys/cluster/members"), "update", true)],
  ["/strongroom.v1.Cluster/PromoteLearner", on(fixed("sys/cluster/members"), "update", true)],
  ["/strongroom.v1.Cluster/RemoveMember", on(fixed("sys/cluster/members"), "update", true)],
  ["/strongroom.v1.Cluster/TransferLeader", on(fixed("sys/cluster/leader"), "update", true)],
  ["/strongroom.v1.Cluster/SaveSnapshot", on(fixed("sys/snapshot"), "read", true)],
  ["/strongroom.v1.Cluster/RestoreSnapshot", on(fixed("sys/snapshot"), "update", true)],

  ["/strongroom.v1.Access/WritePolicy", on(policyPath, "write")],
  ["/strongroom.v1.Access/ReadPolicy", on(policyPath, "read")],
  ["/strongroom.v1.Access/ListPolicies", on(fixed("sys/policies/"), "list")],
  ["/strongroom.v1.Access/DeletePolicy", on(policyPath, "delete")],
  // Binding an identity grants policies: sudo, as for anything that hands out privileges.
  ["/strongroom.v1.Access/BindIdentity", on(fixed("sys/identities"), "update", true)],
  ["/strongroom.v1.Access/UnbindIdentity", on(fixed("sys/identities"), "delete", true)],
  ["/strongroom.v1.Access/ListBindings", on(fixed("sys/identities"), "read")],
  // With a role, the handler checks update on sys/tokens/create/<role> instead of sudo.
  ["/strongroom.v1.Access/CreateToken", caller],
  // A role lets whoever may use it hand out its policies: writing one needs sudo, as a binding.
  ["/strongroom.v1.Access/WriteTokenRole", on(tokenRolePath, "update", true)],
  ["/strongroom.v1.Access/ReadTokenRole", on(tokenRolePath, "read")],
  ["/strongroom.v1.Access/ListTokenRoles", on(fixed("sys/tokens/roles/"), "list")],
  ["/strongroom.v1.Access/DeleteTokenRole", on(tokenRolePath, "delete", true)],
  ["/strongroom.v1.Access/RenewToken", caller],
  ["/strongroom.v1.Access/RevokeToken", caller],
  ["/strongroom.v1.Access/LookupToken", caller],
  // About oneself: any caller; about another token or identity, the handler checks as a lookup.
  ["/strongroom.v1.Access/Capabilities", caller],
  ["/strongroom.v1.Access/ConsumeTokenUse", { kind: "peer" }],
  // Emergency revocation takes credentials from others and can rotate everything: sudo.
  ["/strongroom.v1.Access/RevokeIdentity", on(fixed("sys/revoke"), "update", true)],
  ["/strongroom.v1.Access/EnableIdentity", on(fixed("sys/revoke"), "update", true)],
  ["/strongroom.v1.Access/ListDisabledIdentities", on(fixed("sys/revoke"), "read")],

  // The CA's key signs whatever the roles allow: creating it and writing roles need sudo.
  ["/strongroom.v1.Pki/CreateCa", on(fixed("sys/pki/ca"), "update", true)],
  // The CA certificate and the revocation list are public to every caller.
  ["/strongroom.v1.Pki/GetCa", caller],
  ["/strongroom.v1.Pki/GetCrl", caller],
  ["/strongroom.v1.Pki/WriteRole", on((r) => `sys/pki/roles/${String(r.name ?? "")}`, "update", true)],
  ["/strongroom.v1.Pki/ReadRole", on((r) => `sys/pki/roles/${String(r.name ?? "")}`, "read")],
  ["/strongroom.v1.Pki/ListRoles", on(fixed("sys/pki/roles/"), "list")],
  ["/strongroom.v1.Pki/DeleteRole", on((r) => `sys/pki/roles/${String(r.name ?? "")}`, "delete", true)],
  ["/strongroom.v1.Pki/Issue", on((r) => `sys/pki/issue/${String(r.role ?? "")}`, "update")],

  ["/strongroom.v1.Leases/List", on((r) => `sys/leases/${String(r.prefix ?? "")}`, "list")],
  ["/strongroom.v1.Leases/Lookup", on((r) => `sys/leases/${String(r.id ?? "")}`, "read")],
  ["/strongroom.v1.Leases/Renew", on((r) => `sys/leases/${String(r.id ?? "")}`, "update")],
  ["/strongroom.v1.Leases/Revoke", on((r) => `sys/leases/${String(r.id ?? "")}`, "delete")],
  ["/strongroom.v1.Leases/RevokePrefix", on((r) => `sys/leases/${String(r.prefix ?? "")}`, "delete", true)],
]);
