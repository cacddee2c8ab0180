// The PKI engine on the leader: creates the internal CA once, keeps roles, issues certificates
// under a role, records revocations and signs the revocation list. Its records are replicated and
// barrier-encrypted (pki-records.ts), so the CA key is as protected as any secret and every node
// can sign the list for its consumers. Leases of issued certificates are the lease manager's.

import { StateError } from "../../storage/state/index.js";
import { formatDuration } from "../durations.js";
import { NodeError } from "../errors.js";
import type { SystemRecords } from "../system-records.js";
import {
  type CaMaterial,
  createCa,
  type IssuedCertificate,
  issueLeaf,
  signCrl,
} from "./certificate-authority.js";
import {
  type CaRecord,
  caRecordName,
  checkCertificateName,
  decodeCaRecord,
  decodeRevokedRecord,
  decodeRoleRecord,
  encodePkiRecord,
  nameAllowed,
  pkiAreas,
  type RevokedRecord,
  type RoleRecord,
  roleLimits,
  rolePrefix,
  roleRecordName,
} from "./pki-records.js";

export interface PkiEngineOptions {
  /** How long a signed revocation list is valid; consumers fetch it again before. */
  readonly crlValidityMs: number;
  readonly now?: () => number;
}

export interface SignedCrl {
  readonly pem: string;
  readonly thisUpdate: number;
  readonly nextUpdate: number;
  readonly serials: readonly string[];
}

export class PkiEngine {
  private readonly now: () => number;
  /** The last list this node signed, reused while its entries are the same and it is fresh. */
  private crlCache: (SignedCrl & { key: string }) | null = null;
  /** One CA creation at a time on this leader: a second waits, then finds the first's CA. */
  private creating: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly records: SystemRecords,
    private readonly options: PkiEngineOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  async createCa(commonName: string, ttlMs: number, createdBy: string): Promise<CaRecord> {
    const create = async (): Promise<CaRecord> => {
      if ((await this.records.read(pkiAreas.pki, caRecordName)) !== null)
        throw new NodeError("CA_EXISTS", "the cluster has a CA already");
      const now = this.now();
      const issued = await createCa(commonName, now + ttlMs);
      const record: CaRecord = {
        certificatePem: issued.certificatePem,
        privateKeyPem: issued.privateKeyPem,
        serial: issued.serial,
        notAfter: issued.notAfter,
        createdAt: now,
        createdBy,
      };
      try {
        // Only if still absent as it applies: another leader may have created one meanwhile.
        await this.records.create(pkiAreas.pki, caRecordName, encodePkiRecord(record));
      } catch (error) {
        if (error instanceof StateError && error.code === "CAS_MISMATCH")
          throw new NodeError(
            "CA_EXISTS",
            "the cluster has a CA already: another was created at the same time",
          );
        throw error;
      }
      return record;
    };
    const running = this.creating.then(create, create);
    this.creating = running.catch(() => {});
    return running;
  }

  /** The CA as this node has applied it, or NO_CA. */
  async ca(): Promise<CaRecord> {
    const bytes = await this.records.read(pkiAreas.pki, caRecordName);
    if (bytes === null)
      throw new NodeError("NO_CA", "the cluster has no CA yet: create one with `strongroom certs create-ca`");
    return decodeCaRecord(bytes);
  }

  writeRole(role: RoleRecord): Promise<number> {
    return this.records.put(pkiAreas.pki, roleRecordName(role.name), encodePkiRecord(role));
  }

  async role(name: string): Promise<RoleRecord> {
    const bytes = await this.records.read(pkiAreas.pki, roleRecordName(name));
    if (bytes === null) throw new NodeError("NOT_FOUND", `no PKI role named ${JSON.stringify(name)}`);
    return decodeRoleRecord(bytes);
  }

  async roleNames(): Promise<string[]> {
    const names = await this.records.names(pkiAreas.pki, rolePrefix, 10_000);
    return names.map((name) => name.slice(rolePrefix.length));
  }

  async deleteRole(name: string): Promise<number> {
    await this.role(name);
    return this.records.delete(pkiAreas.pki, roleRecordName(name));
  }

  /**
   * A certificate under `roleName` for `commonName` and `dnsNames`, valid for `ttlMs` (0: the
   * role's default) but never past the role's maximum or the CA's own expiry.
   */
  async issue(
    roleName: string,
    commonName: string,
    dnsNames: readonly string[],
    ttlMs: number,
  ): Promise<IssuedCertificate> {
    const role = await this.role(roleName);
    const names = [checkCertificateName(commonName), ...dnsNames.map(checkCertificateName)];
    if (dnsNames.length > roleLimits.dnsNamesMax)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a certificate carries at most ${roleLimits.dnsNamesMax} DNS names`,
      );
    const refused = names.filter((name) => !nameAllowed(role.allowedNames, name));
    if (refused.length > 0)
      throw new NodeError("PERMISSION_DENIED", `role ${role.name} does not allow ${refused.join(", ")}`);
    const lifetime = ttlMs === 0 ? role.ttlMs : ttlMs;
    if (lifetime > role.maxTtlMs)
      throw new NodeError(
        "INVALID_ARGUMENT",
        `a TTL of ${formatDuration(lifetime)} is above role ${role.name}'s max TTL of ${formatDuration(role.maxTtlMs)}`,
      );
    const ca = await this.ca();
    const now = this.now();
    if (ca.notAfter <= now) throw new NodeError("NO_CA", "the cluster's CA has expired");
    return issueLeaf(ca, {
      commonName: names[0] as string,
      dnsNames: names.slice(1),
      notAfter: Math.min(now + lifetime, ca.notAfter),
      serverAuth: role.serverAuth,
    });
  }

  /**
   * Puts a certificate on the revocation list until it expires. Never refused for the list's size:
   * a compromised certificate must always be revocable (the list is bounded by the certificates
   * issued and not expired, which leases.max and the roles' lifetimes bound).
   */
  async revoke(serial: string, notAfter: number): Promise<number> {
    const record: RevokedRecord = { serial, revokedAt: this.now(), notAfter };
    return this.records.put(pkiAreas.crl, serial, encodePkiRecord(record));
  }

  /** The revocation list as this node has applied it, signed by the CA. */
  async crl(): Promise<SignedCrl> {
    const ca = await this.ca();
    const now = this.now();
    const entries: RevokedRecord[] = [];
    for (const serial of await this.records.names(pkiAreas.crl, "", Number.MAX_SAFE_INTEGER)) {
      const bytes = await this.records.read(pkiAreas.crl, serial);
      if (bytes === null) continue;
      const entry = decodeRevokedRecord(bytes);
      // An expired certificate is refused for its date: the list need not name it.
      if (entry.notAfter > now) entries.push(entry);
    }
    const key = `${ca.serial}:${entries.map((entry) => entry.serial).join(",")}`;
    const cached = this.crlCache;
    if (cached !== null && cached.key === key && now < cached.thisUpdate + this.options.crlValidityMs / 2)
      return cached;
    const thisUpdate = now;
    const nextUpdate = now + this.options.crlValidityMs;
    const material: CaMaterial = ca;
    // The CRL number grows with time on every node: a consumer keeps the newer of two lists.
    const pem = signCrl(material, entries, thisUpdate, nextUpdate, Math.floor(thisUpdate / 1000));
    this.crlCache = { key, pem, thisUpdate, nextUpdate, serials: entries.map((entry) => entry.serial) };
    return this.crlCache;
  }

  /** Drops revocations of certificates that have expired (the leader's sweep). */
  async tidyCrl(): Promise<number> {
    const now = this.now();
    let removed = 0;
    for (const serial of await this.records.names(pkiAreas.crl, "", Number.MAX_SAFE_INTEGER)) {
      const bytes = await this.records.read(pkiAreas.crl, serial);
      if (bytes === null || decodeRevokedRecord(bytes).notAfter > now) continue;
      await this.records.delete(pkiAreas.crl, serial);
      removed++;
    }
    return removed;
  }
}
