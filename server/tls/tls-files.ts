// A listener's or dialer's TLS material (CA bundle, certificate, private key), read from files and
// read again when they change, so certificates rotate without a restart. A change is checked
// before it is used (the key must match the certificate, the certificate must be in its validity
// period); a bad change is reported and the material in use stays. Files are polled (fs.watchFile)
// because rotation tools replace files by rename or swap symlinks (Kubernetes secrets), which
// inotify-based watching misses.

import { X509Certificate } from "node:crypto";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { createSecureContext } from "node:tls";

export interface TlsFilePaths {
  /** PEM bundle of the CA(s) whose certificates the other side must present. */
  readonly caFile: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly certificate: Buffer;
  readonly privateKey: Buffer;
}

export class TlsConfigError extends Error {
  override readonly name = "TlsConfigError";
}

/** Every listener and dialer of strongroom speaks TLS 1.3 only. */
export const tlsMinVersion = "TLSv1.3";

export interface TlsFilesOptions {
  /** How often the files are checked for a change (default 1 s). */
  readonly pollIntervalMs?: number;
  readonly now?: () => number;
  /**
   * Called when a change was refused (the old material stays in use): once per refusal, though
   * each file's poll sees it (a certificate and its key replaced together, or half of them).
   */
  readonly onReloadError?: (error: TlsConfigError) => void;
}

export class TlsFiles {
  private material: TlsMaterial;
  private readonly listeners = new Set<(material: TlsMaterial) => void>();
  private readonly unwatch: (() => void)[] = [];
  /** The refusal last reported, until the files read well again. */
  private refused: string | null = null;

  constructor(
    readonly paths: TlsFilePaths,
    private readonly options: TlsFilesOptions = {},
  ) {
    this.material = readTlsMaterial(paths, options.now ?? Date.now);
    const interval = options.pollIntervalMs ?? 1000;
    for (const file of new Set([paths.caFile, paths.certificateFile, paths.privateKeyFile]))
      this.unwatch.push(pollFile(file, interval, () => this.reload()));
  }

  current(): TlsMaterial {
    return this.material;
  }

  onChange(listener: (material: TlsMaterial) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the files again now (the poll does this on its own). */
  reload(): void {
    let next: TlsMaterial;
    try {
      next = readTlsMaterial(this.paths, this.options.now ?? Date.now);
    } catch (error) {
      if ((error as Error).message !== this.refused) this.options.onReloadError?.(error as TlsConfigError);
      this.refused = (error as Error).message;
      return;
    }
    this.refused = null;
    const same =
      next.ca.equals(this.material.ca) &&
      next.certificate.equals(this.material.certificate) &&
      next.privateKey.equals(this.material.privateKey);
    if (same) return;
    this.material = next;
    for (const listener of this.listeners) listener(next);
  }

  close(): void {
    for (const unwatch of this.unwatch.splice(0)) unwatch();
    this.listeners.clear();
  }
}

interface PolledFile {
  readonly readers: Set<() => void>;
  /** The one listener on Node's watcher of the file; it calls every reader. */
  readonly poll: () => void;
}

const polledFiles = new Map<string, PolledFile>();

/**
 * Polls `file` and calls `onChange` when it changes, until the returned function is called. The
 * listener, the server and the dialers of a node (and the nodes of one process, in tests) read the
 * same CA file: one listener on Node's watcher per file, not one each (Node warns past ten on one
 * watcher), and a close that stops its own reader only, not every reader of the file. The file's
 * first reader sets the interval.
 */
function pollFile(file: string, intervalMs: number, onChange: () => void): () => void {
  let polled = polledFiles.get(file);
  if (polled === undefined) {
    const readers = new Set<() => void>();
    const created: PolledFile = {
      readers,
      poll: () => {
        for (const reader of [...readers]) reader();
      },
    };
    polled = created;
    polledFiles.set(file, created);
    watchFile(file, { interval: intervalMs, persistent: false }, created.poll);
  }
  const { readers, poll } = polled;
  // A function of its own: the same onChange given twice is two readers, each stopped on its own.
  const reader = (): void => onChange();
  readers.add(reader);
  return () => {
    readers.delete(reader);
    if (readers.size > 0 || polledFiles.get(file)?.poll !== poll) return;
    polledFiles.delete(file);
    unwatchFile(file, poll);
  };
}

/** Reads and checks TLS material; every problem is a TlsConfigError naming the file and the fix. */
export function readTlsMaterial(paths: TlsFilePaths, now: () => number = Date.now): TlsMaterial {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new TlsConfigError(
        `cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      );
    }
  };
  const material: TlsMaterial = {
    ca: read(paths.caFile, "CA bundle"),
    certificate: read(paths.certificateFile, "certificate"),
    privateKey: read(paths.privateKeyFile, "private key"),
  };
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(material.certificate);
    new X509Certificate(material.ca);
  } catch (error) {
    throw new TlsConfigError(
      `${paths.certificateFile} or ${paths.caFile} is not a PEM certificate: ${(error as Error).message}`,
    );
  }
  const time = now();
  if (Date.parse(certificate.validTo) < time) {
    throw new TlsConfigError(
      `the certificate ${paths.certificateFile} expired on ${new Date(certificate.validTo).toISOString()}`,
    );
  }
  if (Date.parse(certificate.validFrom) > time) {
    throw new TlsConfigError(
      `the certificate ${paths.certificateFile} is not valid before ${new Date(certificate.validFrom).toISOString()} (clock skew?)`,
    );
  }
  try {
    createSecureContext({
      ca: material.ca,
      cert: material.certificate,
      key: material.privateKey,
      minVersion: tlsMinVersion,
    });
  } catch (error) {
    throw new TlsConfigError(
      `${paths.privateKeyFile} does not fit ${paths.certificateFile} (or one is malformed): ${(error as Error).message}`,
    );
  }
  return material;
}
