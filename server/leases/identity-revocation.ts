// Emergency revocation of an identity after a compromise, on the leader, in the order that shuts
// the door first: (1) the identity is disabled - every node refuses its calls, by certificate or
// by any token, from the index this record applies at; (2) every token it created and every
// certificate issued to it is revoked; (3) optionally every secret it could read is rotated, so
// what it may have copied stops working. The answer says what was done and by which index every
// node has done it.

import type { SecretStateMachine } from "../../storage/state/index.js";
import { StateError } from "../../storage/state/index.js";
import { bindingCovers, checkIdentityPattern } from "../access/access-records.js";
import type { AccessView } from "../access/access-view.js";
import type { Authorizer } from "../access/authorizer.js";
import { NodeError } from "../errors.js";
import type { Rotator } from "../lifecycle/rotator.js";
import { authorize } from "../policy/policy.js";
import type { SystemRecords } from "../system-records.js";
import type { LeaseManager } from "./lease-manager.js";
import {
  type DisabledIdentityRecord,
  encodeLeaseRecord,
  leaseAreas,
  tokenLeasePrefix,
} from "./lease-records.js";

export interface IdentityRevocationParts {
  readonly view: AccessView;
  readonly records: SystemRecords;
  readonly leases: LeaseManager;
  readonly authorizer: Authorizer;
  readonly state: SecretStateMachine;
  readonly rotator: Rotator;
}

export interface RevocationRequest {
  readonly identity: string;
  readonly rotateReadable: boolean;
  readonly keepEnabled: boolean;
  readonly reason: string;
  /** The identity of the operator asking. */
  readonly by: string;
}

export interface RevocationReport {
  readonly disabledAtRevision: number;
  readonly tokensRevoked: string[];
  readonly leasesRevoked: string[];
  readonly secretsRotated: string[];
  readonly secretsToRotateByHand: string[];
  readonly revision: number;
}

const reasonPattern = /^[\x20-\x7e]{0,256}$/;
/** Rotations run at once during a revocation (each is a key generation and a proposal). */
const rotationConcurrency = 8;
const listPage = 1000;

export function checkExactIdentity(identity: string): string {
  if (identity.includes("*"))
    throw new NodeError("INVALID_ARGUMENT", "name one identity: a revocation takes no '*' prefix");
  return checkIdentityPattern(identity);
}

export class IdentityRevocation {
  constructor(private readonly parts: IdentityRevocationParts) {}

  async revoke(request: RevocationRequest): Promise<RevocationReport> {
    const identity = checkExactIdentity(request.identity);
    if (!reasonPattern.test(request.reason))
      throw new NodeError("INVALID_ARGUMENT", "a reason is at most 256 printable ASCII characters");
    if (identity === request.by && !request.keepEnabled)
      throw new NodeError("INVALID_ARGUMENT", "an operator cannot disable its own identity");
    // What it could read is decided before its tokens go: bindings and its tokens' policies.
    const policyNames = await this.policiesOf(identity);
    let revision = 0;
    let disabledAtRevision = 0;
    if (!request.keepEnabled) {
      const record: DisabledIdentityRecord = {
        identity,
        disabledAt: Date.now(),
        disabledBy: request.by,
        reason: request.reason,
      };
      disabledAtRevision = await this.parts.records.put(
        leaseAreas.disabled,
        identity,
        encodeLeaseRecord(record),
      );
      revision = disabledAtRevision;
    }
    const leases = await this.parts.leases.revokeIdentity(identity);
    revision = Math.max(revision, leases.revision);
    const tokensRevoked = leases.revoked
      .filter((id) => id.startsWith(tokenLeasePrefix))
      .map((id) => id.slice(tokenLeasePrefix.length));
    const leasesRevoked = leases.revoked.filter((id) => !id.startsWith(tokenLeasePrefix));
    const secretsRotated: string[] = [];
    const secretsToRotateByHand: string[] = [];
    if (request.rotateReadable) {
      const records = await this.parts.view.records();
      const policies = this.parts.authorizer.policiesOf(records, policyNames);
      const readable: string[] = [];
      for await (const path of this.allPaths())
        if (authorize(policies, path, "read").allowed) readable.push(path);
      const queue = [...readable];
      const rotateNext = async (): Promise<void> => {
        for (let path = queue.shift(); path !== undefined; path = queue.shift()) {
          try {
            const rotated = await this.parts.rotator.rotateNow(path);
            secretsRotated.push(path);
            revision = Math.max(revision, rotated.revision);
          } catch (error) {
            if (error instanceof StateError && error.code === "NOT_ROTATING")
              secretsToRotateByHand.push(path);
            else if (!(error instanceof StateError && error.code === "NOT_FOUND")) throw error;
          }
        }
      };
      await Promise.all(Array.from({ length: rotationConcurrency }, rotateNext));
    }
    return {
      disabledAtRevision,
      tokensRevoked: tokensRevoked.sort(),
      leasesRevoked: leasesRevoked.sort(),
      secretsRotated: secretsRotated.sort(),
      secretsToRotateByHand: secretsToRotateByHand.sort(),
      revision,
    };
  }

  /** Lets a disabled identity make calls again; its revoked tokens and leases stay revoked. */
  async enable(identity: string): Promise<number> {
    const name = checkExactIdentity(identity);
    const records = await this.parts.view.records();
    if (!records.disabledIdentities.has(name)) throw new NodeError("NOT_FOUND", `${name} is not disabled`);
    return this.parts.records.delete(leaseAreas.disabled, name);
  }

  async disabled(): Promise<DisabledIdentityRecord[]> {
    const records = await this.parts.view.records();
    return [...records.disabledIdentities.values()].sort((a, b) => (a.identity < b.identity ? -1 : 1));
  }

  private async policiesOf(identity: string): Promise<string[]> {
    const records = await this.parts.view.records();
    const names = new Set<string>();
    for (const binding of records.bindings.values())
      if (bindingCovers(binding.identity, identity)) for (const name of binding.policies) names.add(name);
    for (const token of records.tokens.values())
      if (token.createdBy === identity) for (const name of token.policies) names.add(name);
    return [...names].sort();
  }

  private async *allPaths(): AsyncGenerator<string> {
    let after: string | null = null;
    do {
      const page: { paths: string[]; next: string | null } = await this.parts.state.list("", after, listPage);
      yield* page.paths;
      after = page.next;
    } while (after !== null);
  }
}
