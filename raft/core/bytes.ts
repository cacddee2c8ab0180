// Byte arrays joined: a snapshot's chunks or parts into one buffer.

/** `parts` one after another in a new buffer of `totalBytes` (their summed length). */
export function concatBytes(parts: readonly Uint8Array[], totalBytes: number): Uint8Array {
  const data = new Uint8Array(totalBytes);
  let offset = 0;
  for (const part of parts) {
    data.set(part, offset);
    offset += part.length;
  }
  return data;
}
