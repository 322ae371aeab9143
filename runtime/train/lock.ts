// The run folder's lock, RUN/run.lock: one pipec process writes a run folder at a time, and a second one
// is told who holds it (pid, host, start time, command). Taking the lock is one link(2) of a fully
// written temporary onto the name: atomic, failing when the name exists, and a reader never sees a
// half-written lock. The holder removes it when it ends; a kill leaves it behind, stale.
// A stale lock (this host, and its pid is not running or is another process now) is taken over. Of two
// processes that both find it stale, only one may remove it: the remover first creates, exclusively,
// a guard file named after that lock's token, and removes the lock only if it still carries that token.
// Nobody else can replace a lock carrying the token meanwhile (replacing it means removing it, which
// needs the guard), so the check and the removal cannot be split by a rival; the loser finds the
// winner's lock, alive. The holder re-reads the lock before each checkpoint (`verify`) so a lock removed
// by hand under a running process stops it before it writes.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { M, runtimeError } from '../errors.js';

export const LOCK_FILE = 'run.lock';
/** PIPEC_TEST_LOCK_PAUSE_MS: a pause after finding a lock stale, so the tests' racing takers overlap. */
const PAUSE_MS = Number(process.env.PIPEC_TEST_LOCK_PAUSE_MS ?? 0);
/** Names of the lock's own temporaries and guards in the run folder (cleaned under the lock). */
export const LOCK_TEMP = /^\.run\.lock\./;

export interface LockHolder {
  format: 'pipec.lock';
  pid: number;
  host: string;
  started: string;
  command: string;
  token: string;
  /** The process's start time in clock ticks since boot (Linux /proc), so a reused pid is not taken for the holder. */
  proc_start?: string;
}

export class RunLock {
  private constructor(
    readonly dir: string,
    readonly holder: LockHolder,
    /** The stale lock this one replaced, if any (for the log). */
    readonly tookOver?: LockHolder,
  ) {}

  get file(): string {
    return path.join(this.dir, LOCK_FILE);
  }

  /** Takes the lock of `dir` (which must exist), or throws PIPE9030 naming the holder. */
  static acquire(dir: string, command: string): RunLock {
    const file = path.join(dir, LOCK_FILE);
    const me: LockHolder = {
      format: 'pipec.lock', pid: process.pid, host: os.hostname(), started: new Date().toISOString(), command,
      token: randomBytes(12).toString('hex'), ...(procStart(process.pid) ? { proc_start: procStart(process.pid) } : {}),
    };
    let tookOver: LockHolder | undefined;
    for (let attempt = 0; attempt < 50; attempt++) {
      if (create(dir, file, me)) {
        // re-check after taking: the name now carries our token
        if (readHolder(file)?.token === me.token) return new RunLock(dir, me, tookOver);
        continue;
      }
      const holder = readHolder(file);
      if (holder === undefined) continue; // released between our attempt and the read: try again
      if (holder === null) throw runtimeError(M.RunDirLocked, [dir, `${file} exists but is not a pipec lock`], { file }, `if no pipec run uses this folder, delete ${file}`);
      if (running(holder)) throw lockedError(dir, holder);
      if (PAUSE_MS) sleep(PAUSE_MS); // tests widen the race between judging a lock stale and removing it
      // stale: remove it under the guard named after its token
      const guard = path.join(dir, `.run.lock.break-${holder.token}`);
      try {
        fs.writeFileSync(guard, String(process.pid), { flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        sleep(20); // another process is taking this stale lock over: look again once it has
        continue;
      }
      try {
        if (readHolder(file)?.token === holder.token) {
          fs.unlinkSync(file);
          tookOver = holder;
        }
      } finally {
        fs.rmSync(guard, { force: true });
      }
    }
    throw runtimeError(M.RunDirLocked, [dir, `its lock ${file} keeps changing hands`], { file }, `if no pipec run uses this folder, delete ${file} and any .run.lock.* files`);
  }

  /** Throws PIPE9037 when the lock file no longer carries this run's token. */
  verify(): void {
    const now = readHolder(this.file);
    if (now?.token === this.holder.token) return;
    throw runtimeError(M.RunLockLost, [this.dir, now ? describeHolder(now) : 'the lock file is gone'], { file: this.file }, 'another process may be writing this folder; check it before resuming');
  }

  release(): void {
    if (readHolder(this.file)?.token === this.holder.token) fs.rmSync(this.file, { force: true });
  }
}

export function describeHolder(h: LockHolder): string {
  return `pid ${h.pid} on host ${h.host}, since ${h.started}: ${h.command}`;
}

function lockedError(dir: string, h: LockHolder) {
  const elsewhere = h.host !== os.hostname();
  return runtimeError(M.RunDirLocked, [dir, describeHolder(h)], { file: path.join(dir, LOCK_FILE) },
    `wait for it to finish, or choose another --out${elsewhere ? `; it runs on another host, so pipec cannot tell whether it is alive: if it is gone, delete ${path.join(dir, LOCK_FILE)}` : ''}`);
}

/** Links a fully written temporary onto `file`; false when `file` exists. */
function create(dir: string, file: string, me: LockHolder): boolean {
  const text = JSON.stringify(me) + '\n';
  const tmp = path.join(dir, `.run.lock.${process.pid}-${me.token}`);
  fs.writeFileSync(tmp, text, { flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOENT: the holder, cleaning the folder's temporaries under its lock, removed ours
    if (code === 'EEXIST' || code === 'ENOENT') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    // a filesystem without hard links: exclusive create, then write (readers retry a lock still empty)
    try {
      fs.writeFileSync(file, text, { flag: 'wx' });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** The holder, undefined when there is no lock file, null when it is not a readable pipec lock. */
export function readHolder(file: string): LockHolder | null | undefined {
  for (let tries = 0; tries < 5; tries++) {
    const st = fs.lstatSync(file, { throwIfNoEntry: false });
    if (!st) return undefined;
    if (!st.isFile() || st.size > 64 * 1024) return null;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const h = JSON.parse(text) as LockHolder;
      if (h?.format === 'pipec.lock' && Number.isInteger(h.pid) && typeof h.token === 'string' && typeof h.host === 'string') return h;
      return null;
    } catch {
      sleep(10); // being written on a filesystem without hard links
    }
  }
  return null;
}

/** Whether the holder may still be running: on another host pipec cannot tell, so yes. */
function running(h: LockHolder): boolean {
  if (h.host !== os.hostname()) return true;
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const now = procStart(h.pid);
  return !(h.proc_start && now && now !== h.proc_start); // the pid now names a different process
}

/** Field 22 of /proc/PID/stat (start time after boot), or undefined where there is no /proc. */
function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
