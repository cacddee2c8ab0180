// A listener that could not start, named by the config field and address an operator set. grpc-js
// reports a port in use as "No address added out of total 1 resolved errors: [listen EADDRINUSE:
// ...]"; `strongroom server` and `strongroom dev` print this instead, without a stack trace.

export class ListenError extends Error {
  override readonly name = "ListenError";

  constructor(
    message: string,
    /** The system's error code (EADDRINUSE, ...), when the failure had one. */
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const reasons: Readonly<Record<string, string>> = {
  EADDRINUSE: "the port is in use (another process listens there)",
  EADDRNOTAVAIL: "no network interface of this machine has that address",
  EACCES: "permission denied (ports below 1024 need privileges)",
};

/** Awaits a listener's start; a failure becomes a ListenError naming `field` and `address`. */
export async function listening<T>(field: string, address: string, start: Promise<T>): Promise<T> {
  try {
    return await start;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const code = (error as NodeJS.ErrnoException | null)?.code ?? /\b(E[A-Z]+)\b/.exec(message)?.[1];
    throw new ListenError(`cannot listen on ${address} (${field}): ${reasonOf(code, message)}`, code, {
      cause: error,
    });
  }
}

function reasonOf(code: string | undefined, message: string): string {
  if (code !== undefined && reasons[code] !== undefined) return reasons[code];
  if (/Name resolution failed/.test(message)) return "the host name does not resolve to an address";
  return message;
}
