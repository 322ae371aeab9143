// Crash-safe writes: data goes to a temporary name in the same directory, is fsynced, then renamed
// over the target (rename is atomic within a filesystem). A kill -9 at any point leaves either the old
// file or the new one, never a torn one; a stray temporary is ignored and cleaned up later.
// Link-safe too: nothing is ever written through a link. New files are created with O_EXCL (never
// through a symbolic link, never into another file's inode), renames replace the name and not what it
// points to, appends open with O_NOFOLLOW and refuse a hard-linked file, and a target that is a
// symbolic link is refused loudly (PIPE9034) at the moment of the write.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { M, runtimeError } from '../errors.js';

const NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0; // absent on Windows, which has no such links to plant

/** Throws PIPE9034 when `file` (itself, not what it points to) is a symbolic link. */
export function refuseLink(file: string): void {
  if (fs.lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink()) throw runtimeError(M.RunPathIsLink, [file, 'symbolic link'], { file });
}

export function writeFileAtomic(file: string, data: string | Buffer): void {
  refuseLink(file);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  fs.rmSync(tmp, { force: true, recursive: true }); // an earlier process's with this pid; rm removes a link, never its target
  writeFileSynced(tmp, data);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** Creates `file`, which must not exist (O_EXCL), writes and fsyncs it: for files of a directory not published yet. */
export function writeFileSynced(file: string, data: string | Buffer): void {
  const fd = openNoFollow(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Appends to a regular file of its own (created when absent): never through a symbolic or hard link. */
export function appendNoFollow(file: string, text: string | Uint8Array): void {
  const fd = openNoFollow(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.nlink > 1) throw runtimeError(M.RunPathIsLink, [file, st.isFile() ? `hard link (${st.nlink} names share it)` : 'special file'], { file });
    fs.writeSync(fd, typeof text === 'string' ? Buffer.from(text) : text);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `dir` when absent (its parent must exist) and checks it is a real directory, not a link to one. */
export function ensureRealDir(dir: string): void {
  try {
    fs.mkdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink()) throw runtimeError(M.RunPathIsLink, [dir, 'symbolic link'], { file: dir });
  if (!st.isDirectory()) throw runtimeError(M.RunDirInvalid, [dir, 'it is a file, not a folder'], { file: dir });
}

function openNoFollow(file: string, flags: number): number {
  try {
    return fs.openSync(file, flags | NOFOLLOW, 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || (code === 'EEXIST' && fs.lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink())) throw runtimeError(M.RunPathIsLink, [file, 'symbolic link'], { file });
    throw e;
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
