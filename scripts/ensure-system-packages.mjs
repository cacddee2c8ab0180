// Runs before `npm test` (npm's pretest): the seal tests talk to a real SoftHSM2 and the chaos
// tests partition nodes with nftables in network namespaces and skew clocks with libfaketime,
// Debian packages that npm cannot install. When one is missing, install it if this is root on a
// machine with apt; otherwise stop with the exact command to run, rather than fail inside a test.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

/** Debian packages, each with a file that proves it is installed. */
const packages = [
  { name: "softhsm2", proof: ["/usr/bin/softhsm2-util"] },
  {
    name: "libsofthsm2",
    proof: ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"],
  },
  // The chaos harness's network partitions (nft, run as root like the rest of the suite), its
  // netns driver (ip), and its clock-skew nemesis (libfaketime in the node processes).
  { name: "nftables", proof: ["/usr/sbin/nft"] },
  { name: "iproute2", proof: ["/usr/sbin/ip", "/usr/bin/ip", "/bin/ip"] },
  {
    name: "libfaketime",
    proof: [
      "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
      "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ],
  },
  // The deploy tests check the systemd unit with systemd-analyze.
  { name: "systemd", proof: ["/usr/bin/systemd-analyze"] },
];

const missing = packages.filter((pkg) => !pkg.proof.some((path) => existsSync(path))).map((pkg) => pkg.name);
if (missing.length === 0) process.exit(0);

const command = `apt-get install -y ${missing.join(" ")}`;
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
if (!isRoot || !existsSync("/usr/bin/apt-get")) {
  process.stderr.write(
    `strongroom's tests need ${missing.join(", ")} (a real SoftHSM2 for the seal tests; nftables, iproute2 and libfaketime for the chaos tests; systemd-analyze for the deploy tests).\nInstall it with:\n  sudo ${command}\n`,
  );
  process.exit(1);
}
process.stdout.write(`installing ${missing.join(", ")} for the tests: ${command}\n`);
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
execFileSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
execFileSync("apt-get", ["install", "-y", "-q", ...missing], { stdio: "inherit", env });
