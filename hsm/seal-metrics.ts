// The seal's state as Prometheus metrics, read at scrape time from the node's seal set and its
// auto-unsealer, so an alert fires on a node that stays sealed or cannot reach its HSM.

import { Gauge, type Registry } from "prom-client";
import type { AutoUnsealer } from "./auto-unsealer.js";
import type { SealSet } from "./seal-set.js";

export interface SealMetricsSource {
  readonly seals: () => SealSet | null;
  readonly autoUnsealer: () => AutoUnsealer | null;
}

export function registerSealMetrics(registry: Registry, source: SealMetricsSource): void {
  new Gauge({
    name: "strongroom_seal_sealed",
    help: "1 while this node is sealed (no root key in memory), 0 once unsealed.",
    registers: [registry],
    collect() {
      this.set(source.seals()?.status().sealed === false ? 0 : 1);
    },
  });
  new Gauge({
    name: "strongroom_seal_hsm_reachable",
    help: "1 when the last HSM auto-unseal attempt succeeded, 0 when it failed, absent without an HSM seal.",
    registers: [registry],
    collect() {
      this.reset();
      const status = source.autoUnsealer()?.status();
      if (status === undefined || status.attempts === 0) return;
      this.set(status.lastError === null ? 1 : 0);
    },
  });
  new Gauge({
    name: "strongroom_seal_auto_unseal_failures",
    help: "HSM auto-unseal attempts that failed since the node started, by error code of the last one.",
    labelNames: ["code"],
    registers: [registry],
    collect() {
      this.reset();
      const status = source.autoUnsealer()?.status();
      if (status === undefined) return;
      this.set({ code: status.lastError?.code ?? "NONE" }, status.failures);
    },
  });
  new Gauge({
    name: "strongroom_seal_unseal_progress",
    help: "Shares entered in the unseal attempt in progress (unseal shares, or recovery shares with an HSM alone).",
    registers: [registry],
    collect() {
      const status = source.seals()?.status();
      this.set(status?.shamir?.progress ?? status?.recovery?.progress ?? 0);
    },
  });
}
