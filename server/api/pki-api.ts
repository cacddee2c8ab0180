// strongroom.v1.Pki: the internal CA, its roles, certificates issued on request (each one a lease)
// and the revocation list. Changes and issuance run on the leader; reads wait for a linearizable
// read barrier, so a consumer fetching the list from any node sees every revocation acknowledged
// before it asked.

import {
  type CaCertificate,
  type CreateCaRequest,
  type CrlResponse,
  type IssueRequest,
  type IssueResponse,
  type ListPkiRolesResponse,
  type PkiRole,
  type PkiRoleRequest,
  PkiService,
  type PkiWriteResponse,
} from "../../proto/gen/strongroom/v1/pki.gen.js";
import { Consistency } from "../../proto/gen/strongroom/v1/secrets.gen.js";
import { formatDuration } from "../durations.js";
import { NodeError } from "../errors.js";
import type { LeaseManager } from "../leases/lease-manager.js";
import type { PkiEngine } from "../pki/pki-engine.js";
import { checkNamePattern, type RoleRecord, roleLimits } from "../pki/pki-records.js";
import type { ReadBarrier } from "../read-barrier.js";
import type { RequestContext } from "../request.js";
import { checkRoleName } from "../role-name.js";
import type { SealKeeper } from "../seal-keeper.js";
import { type AnyApiMethod, method, readMethod } from "./api-method.js";
import { requireServing } from "./secrets-api.js";

export interface PkiApiParts {
  readonly engine: PkiEngine;
  readonly leases: LeaseManager;
  readonly keeper: SealKeeper;
  readonly reads: ReadBarrier;
}

const year = 365 * 24 * 3_600_000;
const caTtlDefaultMs = 5 * year;
const caTtlMaxMs = 30 * year;
const commonNamePattern = /^[\x20-\x7e]{1,64}$/;

export function pkiMethods(parts: PkiApiParts): Record<string, AnyApiMethod> {
  const service = PkiService;
  const serving = () => requireServing(parts.keeper, null);
  const api = new PkiApi(parts);
  return {
    createCa: method(service.createCa, "leader", (r, c) => api.createCa(r, c), serving),
    getCa: readMethod(service.getCa, (_r, c) => api.getCa(c), serving),
    writeRole: method(service.writeRole, "leader", (r, c) => api.writeRole(r, c), serving),
    readRole: readMethod(service.readRole, (r, c) => api.readRole(r, c), serving),
    listRoles: readMethod(service.listRoles, (_r, c) => api.listRoles(c), serving),
    deleteRole: method(service.deleteRole, "leader", (r, c) => api.deleteRole(r, c), serving),
    issue: method(service.issue, "leader", (r, c) => api.issue(r, c), serving),
    getCrl: readMethod(service.getCrl, (_r, c) => api.getCrl(c), serving),
  };
}

class PkiApi {
  constructor(private readonly parts: PkiApiParts) {}

  async createCa(request: CreateCaRequest, context: RequestContext): Promise<CaCertificate> {
    requireServing(this.parts.keeper, context);
    if (!commonNamePattern.test(request.commonName))
      throw new NodeError("INVALID_ARGUMENT", "the CA's common name is 1 to 64 printable ASCII characters");
    const ttlMs = request.ttlMs === 0 ? caTtlDefaultMs : request.ttlMs;
    if (ttlMs < 3_600_000 || ttlMs > caTtlMaxMs)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a CA is valid for 1h to 30 years: asked for ${formatDuration(ttlMs)}`,
      );
    const ca = await this.parts.engine.createCa(request.commonName, ttlMs, context.identity);
    return { certificatePem: ca.certificatePem, serial: ca.serial, notAfterMs: ca.notAfter };
  }

  async getCa(context: RequestContext): Promise<CaCertificate> {
    await this.linearizable(context);
    const ca = await this.parts.engine.ca();
    return { certificatePem: ca.certificatePem, serial: ca.serial, notAfterMs: ca.notAfter };
  }

  async writeRole(request: PkiRole, context: RequestContext): Promise<PkiWriteResponse> {
    requireServing(this.parts.keeper, context);
    const name = checkRoleName(request.name);
    if (request.allowedNames.length === 0 || request.allowedNames.length > roleLimits.allowedNamesMax)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a role allows 1 to ${roleLimits.allowedNamesMax} name patterns`,
      );
    const maxTtlMs = request.maxTtlMs === 0 ? roleLimits.defaultMaxTtlMs : request.maxTtlMs;
    const ttlMs = request.ttlMs === 0 ? Math.min(roleLimits.defaultTtlMs, maxTtlMs) : request.ttlMs;
    if (ttlMs < 1000 || ttlMs > maxTtlMs)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a role's TTL must be from 1s to its max TTL (${formatDuration(maxTtlMs)}): got ${formatDuration(ttlMs)}`,
      );
    if (maxTtlMs > caTtlMaxMs)
      throw new NodeError("INVALID_ARGUMENT", `a max TTL of ${formatDuration(maxTtlMs)} is above 30 years`);
    const role: RoleRecord = {
      name,
      allowedNames: [...new Set(request.allowedNames.map(checkNamePattern))].sort(),
      ttlMs,
      maxTtlMs,
      serverAuth: request.serverAuth,
    };
    return { revision: await this.parts.engine.writeRole(role) };
  }

  async readRole(request: PkiRoleRequest, context: RequestContext): Promise<PkiRole> {
    await this.linearizable(context);
    const role = await this.parts.engine.role(checkRoleName(request.name));
    return { ...role, allowedNames: [...role.allowedNames] };
  }

  async listRoles(context: RequestContext): Promise<ListPkiRolesResponse> {
    await this.linearizable(context);
    return { names: await this.parts.engine.roleNames() };
  }

  async deleteRole(request: PkiRoleRequest, context: RequestContext): Promise<PkiWriteResponse> {
    requireServing(this.parts.keeper, context);
    return { revision: await this.parts.engine.deleteRole(checkRoleName(request.name)) };
  }

  async issue(request: IssueRequest, context: RequestContext): Promise<IssueResponse> {
    requireServing(this.parts.keeper, context);
    const role = checkRoleName(request.role);
    await this.parts.leases.requireRoom(context.identity);
    const issued = await this.parts.engine.issue(role, request.commonName, request.dnsNames, request.ttlMs);
    const leaseId = await this.parts.leases.recordCertificate(context.identity, role, issued);
    const ca = await this.parts.engine.ca();
    return {
      certificatePem: issued.certificatePem,
      privateKeyPem: issued.privateKeyPem,
      caPem: ca.certificatePem,
      serial: issued.serial,
      notAfterMs: issued.notAfter,
      leaseId,
    };
  }

  async getCrl(context: RequestContext): Promise<CrlResponse> {
    await this.linearizable(context);
    const crl = await this.parts.engine.crl();
    return {
      crlPem: crl.pem,
      thisUpdateMs: crl.thisUpdate,
      nextUpdateMs: crl.nextUpdate,
      revokedSerials: [...crl.serials],
    };
  }

  private async linearizable(context: RequestContext): Promise<void> {
    requireServing(this.parts.keeper, context);
    await this.parts.reads.wait(Consistency.CONSISTENCY_LINEARIZABLE, 0, context);
  }
}
