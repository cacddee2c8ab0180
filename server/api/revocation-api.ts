// The emergency-revocation methods of strongroom.v1.Access (RevokeIdentity, EnableIdentity,
// ListDisabledIdentities), served by the identity revocation on the leader.

import type {
  AccessWriteResponse,
  EnableIdentityRequest,
  ListDisabledIdentitiesResponse,
  RevokeIdentityRequest,
  RevokeIdentityResponse,
} from "../../proto/gen/strongroom/v1/access.gen.js";
import { AccessService } from "../../proto/gen/strongroom/v1/access.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import type { IdentityRevocation } from "../leases/identity-revocation.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { SealKeeper } from "../seal-keeper.js";
import { type AnyApiMethod, method, readMethod } from "./api-method.js";
import { requireServing } from "./secrets-api.js";

export interface RevocationApiParts {
  readonly revocation: IdentityRevocation;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
}

export function revocationMethods(parts: RevocationApiParts): Record<string, AnyApiMethod> {
  const service = AccessService;
  const serving = () => requireServing(parts.keeper, null);
  return {
    revokeIdentity: method(
      service.revokeIdentity,
      "leader",
      async (request: RevokeIdentityRequest, context): Promise<RevokeIdentityResponse> => {
        requireServing(parts.keeper, context);
        return await parts.revocation.revoke({
          identity: request.identity,
          rotateReadable: request.rotateReadable,
          keepEnabled: request.keepEnabled,
          reason: request.reason,
          by: context.identity,
        });
      },
      serving,
    ),
    enableIdentity: method(
      service.enableIdentity,
      "leader",
      async (request: EnableIdentityRequest, context): Promise<AccessWriteResponse> => {
        requireServing(parts.keeper, context);
        return { revision: await parts.revocation.enable(request.identity) };
      },
      serving,
    ),
    listDisabledIdentities: readMethod(
      service.listDisabledIdentities,
      async (_request, context): Promise<ListDisabledIdentitiesResponse> => {
        requireServing(parts.keeper, context);
        await parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
        return {
          identities: (await parts.revocation.disabled()).map((record) => ({
            identity: record.identity,
            disabledAtMs: record.disabledAt,
            disabledBy: record.disabledBy,
            reason: record.reason,
          })),
        };
      },
      serving,
    ),
  };
}
