// What every CLI command loads before it runs: the modules the CLI's entry imports statically.
// Each package costs a command's start 17-50 ms on this machine (docs/performance.md); a barrel
// import of storage/state once made `kv get` load LevelDB's native addon, msgpackr and the whole
// state machine. The server, the dev cluster, chaos, audit verification, the Shamir library and
// YAML output load only in the commands that use them (dynamic imports). And what a node loads at
// its start: not what it uses only when asked (certificates, server reflection).

import { build, type Metafile } from "esbuild";
import { expect, it } from "vitest";

/** The files and packages reachable from `entry` through static imports alone. */
function staticClosure(metafile: Metafile, entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set([entry]);
  const packages = new Set<string>();
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const imported of metafile.inputs[file]?.imports ?? []) {
      if (imported.kind !== "import-statement") continue;
      if (imported.external) {
        if (!imported.path.startsWith("node:")) packages.add(imported.path);
      } else if (!files.has(imported.path)) {
        files.add(imported.path);
        queue.push(imported.path);
      }
    }
  }
  return { files, packages };
}

/** esbuild's view of `entry` and everything it imports, packages left out. */
async function metafileOf(entry: string): Promise<Metafile> {
  const { metafile } = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    write: false,
    metafile: true,
    packages: "external",
    outdir: "unused",
    logLevel: "silent",
  });
  return metafile;
}

it("a CLI command starts by loading commander, the gRPC stack and the SDK, nothing of the server", async () => {
  const metafile = await metafileOf("cli/main.ts");
  const { files, packages } = staticClosure(metafile, "cli/main.ts");
  expect([...packages].sort()).toEqual([
    "@bufbuild/protobuf/wire",
    "@grpc/grpc-js",
    "cockatiel",
    "commander",
  ]);
  const serverSide = [...files].filter((file) => /^(server|raft|storage|chaos|hsm)\//.test(file));
  // The few pure files the CLI shares with the nodes: durations, name and path rules, share text,
  // the version.
  expect(serverSide.sort()).toEqual([
    "hsm/errors.ts",
    "hsm/pkcs11/pkcs11-config.ts",
    "hsm/shares/share-encryption.ts",
    "server/durations.ts",
    "server/version.ts",
    "storage/state/errors.ts",
    "storage/state/limits.ts",
  ]);
  // What those imports used to pull in is still there, behind the commands that need it.
  expect(Object.keys(metafile.inputs)).toEqual(
    expect.arrayContaining(["server/node.ts", "server/audit/audit-verify.ts", "hsm/seal-operations.ts"]),
  );
});

it("a node starts without node-forge and the reflection service, which load when first used", async () => {
  const { files, packages } = staticClosure(
    await metafileOf("cli/server-command.ts"),
    "cli/server-command.ts",
  );
  // The node itself is there, with its gRPC health service.
  expect(files).toContain("server/pki/certificate-authority.ts");
  expect(files).toContain("server/grpc-standard-services.ts");
  expect(packages).toContain("grpc-health-check");
  expect(
    [...packages].filter((name) => /node-forge|@grpc\/reflection|@grpc\/proto-loader/.test(name)),
  ).toEqual([]);
});
