// The names of roles, the PKI engine's (server/pki/) and token roles (server/access/): one rule for
// both, so that a name an operator can give one kind of role is a name the other accepts.

import { NodeError } from "./errors.js";

const roleNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

export function checkRoleName(name: string): string {
  if (!roleNamePattern.test(name))
    throw new NodeError(
      "INVALID_ARGUMENT",
      // Cut: a request may carry a name of megabytes, and the message reaches logs and terminals.
      `a role name is 1 to 63 letters, digits, '_' or '-', starting with a letter or digit: got ${JSON.stringify(name.slice(0, 80))}${name.length > 80 ? ` (${name.length} characters)` : ""}`,
    );
  return name;
}
