// Runs before `npm test` (after the system packages check): says, in one line, that the container
// suite is not part of `npm test` and why, so nobody reads a green run as "the image works".
import { execFileSync } from "node:child_process";

let engine = null;
try {
  engine = execFileSync("docker", ["version", "--format", "{{.Server.Version}}"], {
    stdio: ["ignore", "pipe", "ignore"],
    timeout: 10_000,
  })
    .toString()
    .trim();
} catch {
  engine = null;
}
process.stdout.write(
  engine === null
    ? "container suite not run: no Docker engine answers here (install docker.io and start dockerd, then npm run test:containers)\n"
    : `container suite not run by npm test: it builds the image first (minutes); Docker ${engine} answers, so npm run test:containers runs it\n`,
);
