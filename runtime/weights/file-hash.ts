// SHA-256 of a file without reading it into memory at once: checkpoint manifests (runtime/train/manifest.ts)
// and the data pre-flight's cache (runtime/data/preflight-cache.ts) hash files of gigabytes.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

/** SHA-256 of a file, read in 4 MiB pieces (checkpoints and data files reach gigabytes). */
export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
