// A checkpoint's manifest, manifest.json: every file of the checkpoint folder with its size and SHA-256.
// It is written last, after every other file is written and fsynced, and before the folder is
// published, so a published checkpoint whose files do not match it was damaged after publishing (a disk,
// a copy, a hand) and is not resumed from. Hashes are taken from the bytes as they are written (no
// second read); verification streams each file in 4 MiB pieces.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileSynced } from '../weights/atomic.js';
import { sha256File } from '../weights/file-hash.js';

export const MANIFEST_FILE = 'manifest.json';

export interface Manifest {
  format: 'pipec.manifest';
  version: 1;
  /** Path inside the checkpoint ('/'-separated) -> size in bytes and SHA-256 (hex). */
  files: Record<string, { size: number; sha256: string }>;
}

/** Writes the files of an unpublished checkpoint folder, then their manifest. */
export class ManifestWriter {
  private readonly files: Manifest['files'] = {};

  constructor(readonly dir: string) {}

  write(rel: string, data: string | Buffer): void {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    writeFileSynced(path.join(this.dir, rel), bytes);
    this.files[rel.split(path.sep).join('/')] = { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  finish(): void {
    const m: Manifest = { format: 'pipec.manifest', version: 1, files: this.files };
    writeFileSynced(path.join(this.dir, MANIFEST_FILE), JSON.stringify(m, null, 2) + '\n');
  }
}

/** What is wrong with a checkpoint folder's files against its manifest, or null when every file is intact. */
export function verifyManifest(dir: string): string | null {
  const file = path.join(dir, MANIFEST_FILE);
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st) return `it has no ${MANIFEST_FILE} (written by an older pipec, or not by pipec)`;
  if (!st.isFile() || st.size > 64 << 20) return `${MANIFEST_FILE} is not a regular file`;
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    return `${MANIFEST_FILE} is not valid JSON (${(e as Error).message})`;
  }
  if (m?.format !== 'pipec.manifest' || m.version !== 1 || typeof m.files !== 'object' || m.files === null) return `${MANIFEST_FILE} is not a pipec manifest`;
  for (const [rel, want] of Object.entries(m.files)) {
    if (!plainRelative(rel) || !Number.isSafeInteger(want?.size) || !/^[0-9a-f]{64}$/.test(String(want?.sha256))) return `${MANIFEST_FILE} has a malformed entry "${rel}"`;
    const f = path.join(dir, ...rel.split('/'));
    const fst = fs.lstatSync(f, { throwIfNoEntry: false });
    if (!fst) return `${rel} is missing`;
    if (!fst.isFile()) return `${rel} is not a regular file`;
    if (fst.size !== want.size) return `${rel} is ${fst.size} bytes, the manifest says ${want.size}`;
    if (sha256File(f) !== want.sha256) return `${rel} does not match its SHA-256 in the manifest`;
  }
  return null;
}

/** 'a/b.json': no absolute path, no empty, '.' or '..' segment. */
function plainRelative(rel: string): boolean {
  return rel.length > 0 && !rel.includes('\\') && rel.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}
