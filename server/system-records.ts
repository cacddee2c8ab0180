// Writing and reading the server's own replicated records (policies, tokens, leases, the PKI's CA
// and roles, ...): each is barrier ciphertext bound to "sys:<area>/<name>" - a context no secret
// path can have (':' is not allowed in one) - so a record cannot be moved to another name or passed
// off as a secret. Writes are proposed through Raft from the leader; a refused change comes back
// as the state machine's StateError (CAS_MISMATCH, NOT_FOUND, ...).

import type { z } from "zod";
import type { RaftNode } from "../raft/node/index.js";
import type { Barrier } from "../storage/barrier/index.js";
import {
  type ApplyResult,
  encodeCommand,
  type SecretCommand,
  type SecretStateMachine,
  StateError,
  type SystemArea,
} from "../storage/state/index.js";
import { NodeError } from "./errors.js";

export function barrierContext(area: SystemArea, name: string): string {
  return `sys:${area}/${name}`;
}

const decoder = new TextDecoder();

/** A record's JSON plaintext checked against its schema; INTERNAL naming the kind when it is not. */
export function decodeJsonRecord<T>(schema: z.ZodType<T>, kind: string, bytes: Uint8Array): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new NodeError("INTERNAL", `a ${kind} record does not decode`);
  }
  const checked = schema.safeParse(parsed);
  if (!checked.success) throw new NodeError("INTERNAL", `a ${kind} record does not have the expected fields`);
  return checked.data;
}

export interface SystemRecordsParts {
  readonly raft: () => RaftNode<ApplyResult | null>;
  readonly barrier: Barrier;
  readonly state: SecretStateMachine;
  /** Whether this leader may propose `sys.putAll` (every member understands it). */
  readonly systemPutAllUsable: () => boolean;
}

export class SystemRecords {
  constructor(private readonly parts: SystemRecordsParts) {}

  /** Encrypts and proposes a record; with `ifDigest`, only if the record now stored has that SHA-256. */
  put(area: SystemArea, name: string, plaintext: Uint8Array, ifDigest?: Uint8Array): Promise<number> {
    const value = this.parts.barrier.encrypt(barrierContext(area, name), plaintext);
    return this.propose({
      op: "sys.put",
      area,
      path: name,
      value,
      at: Date.now(),
      ...(ifDigest === undefined ? {} : { ifDigest }),
    });
  }

  /**
   * Encrypts and proposes a record that must not exist yet: refused (CAS_MISMATCH) when it does.
   * Checked in log order as the entry applies, so that of two creations proposed at once by two
   * leaders (across a leadership change) one is refused. Until every member understands that
   * check (a rolling upgrade), only this node's applied state is checked before proposing.
   */
  async create(area: SystemArea, name: string, plaintext: Uint8Array): Promise<number> {
    if (!this.parts.systemPutAllUsable()) {
      if ((await this.parts.state.systemRecord(area, name)) !== null)
        throw new StateError("CAS_MISMATCH", `the ${area} record ${name} exists`);
      return this.put(area, name, plaintext);
    }
    const value = this.parts.barrier.encrypt(barrierContext(area, name), plaintext);
    return this.propose({
      op: "sys.putAll",
      path: "",
      records: [{ area, path: name, value }],
      ifAbsent: [{ area, path: name }],
      at: Date.now(),
    });
  }

  delete(area: SystemArea, name: string, ifDigest?: Uint8Array): Promise<number> {
    return this.propose({
      op: "sys.delete",
      area,
      path: name,
      at: Date.now(),
      ...(ifDigest === undefined ? {} : { ifDigest }),
    });
  }

  /** A record as this node has applied it, decrypted, or null. */
  async read(area: SystemArea, name: string): Promise<Uint8Array | null> {
    const stored = await this.parts.state.systemRecord(area, name);
    return stored === null ? null : this.parts.barrier.decrypt(barrierContext(area, name), stored);
  }

  /** Every record name of an area starting with `prefix`, in order, at most `limit`. */
  async names(area: SystemArea, prefix: string, limit: number): Promise<string[]> {
    const found: string[] = [];
    let after: string | null = null;
    do {
      const page: { names: string[]; next: string | null } = await this.parts.state.listSystem(
        area,
        after,
        Math.min(1000, limit),
      );
      for (const name of page.names) {
        if (name < prefix) continue;
        if (!name.startsWith(prefix) || found.length >= limit) return found;
        found.push(name);
      }
      after = page.next;
    } while (after !== null);
    return found;
  }

  /** Proposes a change and answers its revision, once it is applied here. */
  async propose(command: SecretCommand): Promise<number> {
    const { index, result } = await this.parts.raft().propose(encodeCommand(command));
    if (result !== null && !result.ok) throw new StateError(result.code, result.message);
    return this.parts.state.revisionOf(index);
  }
}
