// Imported for its effect by the benchmarks, whose load generators dial nodes (and etcd members)
// by IP address with plain grpc-js clients. grpc-js sets the TLS server name to the address when it
// dials an IP address, which Node warns about (DEP0123); the name is not used for anything (the
// certificate is checked against the address), so the warning is noise. Every other warning
// passes. The SDK and the nodes' peer channels send another name instead (client/credentials.ts,
// server/tls/credentials.ts).
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
  const code =
    typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === "DEP0123") return;
  emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

export {};
