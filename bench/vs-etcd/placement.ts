// Where bench:vs-etcd puts its two clusters on loopback, shared with the tools that watch them
// (bench:ab-switch reads the strongroom nodes' /metrics).

/** strongroom node i listens on 127.0.0.<hostBase + i>: clients on basePort, peers +1, HTTP (/metrics) +2. */
export const strongroomPlacement = { hostBase: 211, basePort: 7400 } as const;

/** etcd member i listens on 127.0.0.<etcdHostBase + i>. */
export const etcdHostBase = 221;

/** The strongroom nodes' /metrics addresses. */
export function strongroomMetricsUrls(size = 3): string[] {
  const { hostBase, basePort } = strongroomPlacement;
  return Array.from({ length: size }, (_, i) => `http://127.0.0.${hostBase + i}:${basePort + 2}/metrics`);
}
