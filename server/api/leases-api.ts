// strongroom.v1.Leases: list, look up, renew and revoke leases (tokens and issued certificates)
// through the lease manager. Changes run on the leader; reads wait for a linearizable read barrier.

import {
  type LeaseRequest,
  LeasesService,
  type Lease as LeaseWire,
  type LeaseWriteResponse,
  type ListLeasesRequest,
  type ListLeasesResponse,
  type RenewLeaseRequest,
  type RevokePrefixRequest,
  type RevokePrefixResponse,
} from "../../proto/gen/strongroom/v1/leases.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { checkedCaller } from "../access/authorizer.js";
import { NodeError } from "../errors.js";
import type { LeaseManager } from "../leases/lease-manager.js";
import { type LeaseView, tokenLeaseId } from "../leases/lease-records.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { RequestContext } from "../request.js";
import type { SealKeeper } from "../seal-keeper.js";
import { type AnyApiMethod, method, readMethod } from "./api-method.js";
import { requireServing } from "./secrets-api.js";

export interface LeasesApiParts {
  readonly leases: LeaseManager;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
}

const pageDefault = 100;
const pageMax = 1000;
const leaseIdPattern = /^[A-Za-z0-9._/-]{1,256}$/;

export function checkLeaseId(id: string, what = "a lease id"): string {
  if (
    !leaseIdPattern.test(id) ||
    id
      .split("/")
      .some(
        (segment, index, all) =>
          segment === "." || segment === ".." || (segment === "" && index < all.length - 1),
      )
  )
    throw new NodeError(
      "INVALID_ARGUMENT",
      `${what} is 1 to 256 letters, digits, '.', '_', '-' or '/', with no empty, '.' or '..' segment: got ${JSON.stringify(id)}`,
    );
  return id;
}

export function leasesMethods(parts: LeasesApiParts): Record<string, AnyApiMethod> {
  const service = LeasesService;
  const serving = () => requireServing(parts.keeper, null);
  const linearizable = async (context: RequestContext) => {
    requireServing(parts.keeper, context);
    await parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
  };
  return {
    list: readMethod(
      service.list,
      async (request: ListLeasesRequest, context): Promise<ListLeasesResponse> => {
        await linearizable(context);
        if (request.prefix !== "") checkLeaseId(request.prefix, "a lease prefix");
        if (request.limit > pageMax) throw new NodeError("INVALID_ARGUMENT", `limit is at most ${pageMax}`);
        const page = await parts.leases.list(request.prefix, request.after, request.limit || pageDefault);
        return { leases: page.leases.map(toWire), nextAfter: page.next };
      },
      serving,
    ),
    lookup: readMethod(
      service.lookup,
      async (request: LeaseRequest, context): Promise<LeaseWire> => {
        await linearizable(context);
        return toWire(await parts.leases.lookup(checkLeaseId(request.id)));
      },
      serving,
    ),
    renew: method(
      service.renew,
      "leader",
      async (request: RenewLeaseRequest, context): Promise<LeaseWire> => {
        requireServing(parts.keeper, context);
        return toWire(await parts.leases.renew(checkLeaseId(request.id), request.incrementMs));
      },
      serving,
    ),
    revoke: method(
      service.revoke,
      "leader",
      async (request: LeaseRequest, context): Promise<LeaseWriteResponse> => {
        requireServing(parts.keeper, context);
        return { revision: (await parts.leases.revoke(checkLeaseId(request.id))).revision };
      },
      serving,
    ),
    revokePrefix: method(
      service.revokePrefix,
      "leader",
      async (request: RevokePrefixRequest, context): Promise<RevokePrefixResponse> => {
        requireServing(parts.keeper, context);
        const prefix = checkLeaseId(request.prefix, "a lease prefix");
        const revoked = await parts.leases.revokePrefix(prefix);
        // The caller revoking its own token with the rest is told (its next call is refused).
        const accessor = checkedCaller(context)?.token?.accessor;
        return {
          ...revoked,
          callerTokenRevoked: accessor !== undefined && revoked.revoked.includes(tokenLeaseId(accessor)),
        };
      },
      serving,
    ),
  };
}

function toWire(lease: LeaseView): LeaseWire {
  return {
    id: lease.id,
    kind: lease.kind,
    identity: lease.identity,
    issuedAtMs: lease.issuedAt,
    expiresAtMs: lease.expiresAt,
    maxExpiresAtMs: lease.maxExpiresAt,
    renewable: lease.renewable,
  };
}
