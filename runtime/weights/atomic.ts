// Crash-safe writes: data goes to a temporary name in the same directory, is fsynced, then renamed
// over the target (rename is atomic within a filesystem). A kill -9 at any point leaves either the old
// file or the new one, never a torn one; a stray temporary is ignored and cleaned up later.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  writeFileSynced(tmp, data);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** Writes a file inside a directory that is not published yet (the directory rename publishes it). */
export function writeFileSynced(file: string, data: string | Buffer): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  }
}
