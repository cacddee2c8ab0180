// The simulator's application: a map of registers with put and compare-and-set, driven by committed
// entries. Apply is deterministic (the result depends only on the entry and the prior state), as
// strongroom's real state machine must be.

import type { RegisterInput } from "../../chaos/checker/index.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface KvCommand {
  readonly operation: number;
  readonly input: RegisterInput;
}

export function encodeCommand(command: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(decoder.decode(data)) as KvCommand;
}

export class KvStateMachine {
  private values = new Map<string, string>();
  applied = 0;

  /** Applies a write; answers null for put and whether it swapped for cas. */
  apply(index: number, data: Uint8Array): boolean | null {
    this.applied = index;
    if (data.length === 0) return null;
    const { input } = decodeCommand(data);
    switch (input.kind) {
      case "put":
        this.values.set(input.key, input.value);
        return null;
      case "cas": {
        const current = this.values.get(input.key) ?? null;
        if (current !== input.expected) return false;
        this.values.set(input.key, input.value);
        return true;
      }
      case "get":
        return null;
    }
  }

  skip(index: number): void {
    this.applied = index;
  }

  get(key: string): string | null {
    return this.values.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.values].sort(([a], [b]) => (a < b ? -1 : 1))));
  }

  restore(index: number, data: Uint8Array): void {
    this.values = new Map(JSON.parse(decoder.decode(data)) as [string, string][]);
    this.applied = index;
  }
}
