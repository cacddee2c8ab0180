// Structured logs (pino). Redaction is configured here, once, for every field that could hold a
// secret - values, shares, tokens, PINs, keys - so that a careless log call still prints
// "[redacted]". The node's own log calls never pass such fields; this is the second line.

import { type DestinationStream, type Logger, pino } from "pino";

const redactedFields = [
  "value",
  "share",
  "shares",
  "token",
  "pin",
  "key",
  "rootKey",
  "secret",
  "plaintext",
  "authorization",
];

export function createLogger(nodeId: string, level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { node: nodeId },
    redact: {
      paths: [
        ...redactedFields,
        ...redactedFields.map((field) => `*.${field}`),
        ...redactedFields.map((field) => `*.*.${field}`),
      ],
      censor: "[redacted]",
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

export type { Logger };
