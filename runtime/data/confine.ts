// Confinement: a path that a data file names (a record's "image") leads to a regular file inside the
// dataset's root folder (`images:`) once symbolic links are resolved, or it is not opened at all. A
// dataset is often downloaded from strangers; "../../.ssh/id_rsa", "/etc/passwd" or a link planted in
// the images folder must not make the trainer read, or train on, files the user never meant to share.
//
// The decision is made in one place, `DataRoot.confine` (it only resolves and stats, never opens), and
// enforced at the last moment by `DataRoot.read`, which decides again right before it opens the file
// and then checks the file it actually opened (Linux: /proc/self/fd names it), so a link swapped in
// between the two is caught too. Nothing else in runtime/data opens a path taken from a data file.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What `confine` decided about a name. `refused`: outside the root; `missing`: inside, but not a readable file. */
export type Verdict = { kind: 'inside'; real: string } | { kind: 'refused'; why: string } | { kind: 'missing'; why: string };

/** Thrown by `DataRoot.read`; callers turn it into a located PIPE9050 (refused) or PIPE9004 (missing). */
export class ConfinementError extends Error {
  constructor(readonly verdict: Exclude<Verdict, { kind: 'inside' }>) {
    super(verdict.why);
    this.name = 'ConfinementError';
  }
}

const FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0);
const PROC_FD = fs.existsSync('/proc/self/fd') ? '/proc/self/fd' : undefined;

export class DataRoot {
  private realRoot: string | null | undefined; // undefined: not resolved yet; null: the folder is missing

  /** `dir`: the absolute folder; `shown`: how the program wrote it, for messages. */
  constructor(
    readonly dir: string,
    readonly shown: string = dir,
  ) {}

  /** The root after symbolic links, or null when it does not exist (then every name is `missing`). */
  root(): string | null {
    if (this.realRoot === undefined) {
      try {
        this.realRoot = fs.statSync(this.dir).isDirectory() ? fs.realpathSync.native(this.dir) : null;
      } catch {
        this.realRoot = null;
      }
    }
    return this.realRoot;
  }

  /** True when `real` (a resolved path) is the root or below it. */
  contains(real: string): boolean {
    const root = this.root();
    if (root === null) return false;
    return real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  }

  /** The one decision: where `name` leads, or why it is not read. Resolves and stats; never opens. */
  confine(name: string): Verdict {
    if (name === '') return { kind: 'refused', why: 'is an empty path' };
    if (name.includes('\0')) return { kind: 'refused', why: 'contains a NUL character' };
    if (path.isAbsolute(name) || path.win32.isAbsolute(name) || /^[A-Za-z]:/.test(name))
      return { kind: 'refused', why: 'is an absolute path (a data file may only name files inside its images folder)' };
    // `..` is judged on the text first (with \ as a separator too, as Windows-made datasets write it):
    // a name that climbs above the root is refused whatever the disk holds.
    let depth = 0;
    for (const part of name.split(/[\\/]+/)) {
      if (part === '..') depth--;
      else if (part !== '' && part !== '.') depth++;
      if (depth < 0) return { kind: 'refused', why: 'climbs out of the images folder with ".."' };
    }
    const root = this.root();
    if (root === null) return { kind: 'missing', why: `does not exist: the images folder "${this.shown}" does not exist` };
    const candidate = path.resolve(root, name);
    let real: string;
    try {
      real = fs.realpathSync.native(candidate);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') return { kind: 'refused', why: 'is a loop of symbolic links' };
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return { kind: 'missing', why: `cannot be resolved (${code ?? (e as Error).message})` };
      // Missing: but a missing file below a link that leads out is still outside, and saying "does not
      // exist" there would tell what exists outside. Judge the deepest folder that does exist.
      return this.contains(this.deepestExisting(candidate)) ? { kind: 'missing', why: 'does not exist' } : { kind: 'refused', why: 'leads outside the images folder through a symbolic link' };
    }
    if (!this.contains(real)) return { kind: 'refused', why: 'leads outside the images folder through a symbolic link' };
    let st: fs.Stats;
    try {
      st = fs.statSync(real);
    } catch (e) {
      return { kind: 'missing', why: `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
    }
    if (st.isDirectory()) return { kind: 'missing', why: 'is a folder, not a file' };
    if (!st.isFile()) return { kind: 'missing', why: 'is not a regular file' };
    return { kind: 'inside', real };
  }

  /**
   * Reads the file `name` names (at most `maxBytes` of it): confine() decides right before the open, and
   * the opened file is checked to be the one decided on. Throws ConfinementError, never reads outside.
   */
  read(name: string, maxBytes = Infinity): Buffer {
    const v = this.confine(name);
    if (v.kind !== 'inside') throw new ConfinementError(v);
    let fd: number;
    try {
      fd = fs.openSync(v.real, FLAGS);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ELOOP here: the resolved path's last part became a link after confine() looked.
      if (code === 'ELOOP') throw new ConfinementError({ kind: 'refused', why: 'was replaced by a symbolic link while it was being opened' });
      throw new ConfinementError({ kind: 'missing', why: code === 'ENOENT' ? 'does not exist' : `cannot be opened (${code ?? (e as Error).message})` });
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new ConfinementError({ kind: 'missing', why: 'is not a regular file' });
      if (!this.opened(fd, v.real, st)) throw new ConfinementError({ kind: 'refused', why: 'changed to a file outside the images folder while it was being opened' });
      const size = Math.min(st.size, maxBytes);
      const buf = Buffer.alloc(size);
      let done = 0;
      while (done < size) {
        const n = fs.readSync(fd, buf, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return done < size ? buf.subarray(0, done) : buf;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Is the open file `fd` inside the root? Linux names it in /proc; elsewhere it must be the inode decided on. */
  private opened(fd: number, real: string, st: fs.Stats): boolean {
    if (PROC_FD) {
      try {
        return this.contains(fs.readlinkSync(`${PROC_FD}/${fd}`));
      } catch {
        // no /proc entry after all: fall through to the inode comparison
      }
    }
    try {
      const now = fs.statSync(real);
      return now.dev === st.dev && now.ino === st.ino && this.contains(fs.realpathSync.native(real));
    } catch {
      return false;
    }
  }

  private deepestExisting(p: string): string {
    for (let dir = path.dirname(p); ; dir = path.dirname(dir)) {
      try {
        return fs.realpathSync.native(dir);
      } catch {
        if (path.dirname(dir) === dir) return dir;
      }
    }
  }
}
