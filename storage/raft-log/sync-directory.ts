// A rename or a new file is durable once the directory holding it is synced, too.
import { open } from "node:fs/promises";

export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
