// Opening a run folder for `pipec run`: take its lock (lock.ts), then decide, under the lock, whether
// this run may use the folder:
//   absent or empty                      -> a new run            (--resume: PIPE9023, nothing to resume)
//   a run of this program                -> PIPE9031, unless --resume (continue it) or --overwrite
//   a run of another program (graph hash) -> PIPE9032, unless --overwrite (--resume: PIPE9024)
//   anything else (the user's files)     -> PIPE9033, always: pipec never writes into or deletes them
// A folder is a pipec run when it holds run.json (written when a run starts), or, for runs written
// before run.json existed, a pipec graph.json beside checkpoints/ or metrics.jsonl. --overwrite deletes
// only the files a run writes (RUN_FILES), never anything else in the folder. Stale temporaries of
// killed processes are removed once the lock is held (nobody else writes here then).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { M, PipeRuntimeError, runtimeError } from '../errors.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { LATEST_FILE, readLatestName } from './checkpoint.js';
import { graphHash } from './graph-hash.js';
import { LOCK_FILE, LOCK_TEMP, RunLock } from './lock.js';

export const RUN_MARKER = 'run.json';
/** Everything a run writes at the top of its folder; --overwrite removes these and nothing else. */
// loss.html: the page runs wrote before dashboard.html, still removed by --overwrite
export const RUN_FILES = [RUN_MARKER, 'graph.json', 'tokenizer.json', 'metrics.jsonl', 'eval.jsonl', 'dashboard.html', 'tb', 'loss.html', 'summary.json', 'preflight.json', 'data-index', 'checkpoints'];
/** writeFileAtomic's temporaries (`.NAME.tmp-PID`) and checkpoint temporaries (`.tmp-NAME-PID`). */
const TEMPORARY = /^\..+\.tmp-\d+$|^\.tmp-.+-\d+$/;

export type RunPolicy = 'new' | 'resume' | 'overwrite';

export type FolderState =
  | { kind: 'empty' }
  | { kind: 'run'; hash: string; what: string }
  | { kind: 'foreign'; entries: string[] };

export interface OpenRunDir {
  dir: string;
  lock: RunLock;
  /** What the folder held before (after --overwrite, what was removed). */
  before: FolderState;
  /** Lines for the log: a stale lock taken over, temporaries cleaned, a run overwritten. */
  notes: string[];
  /** Removes the lock, and the folder itself when this run created it and wrote nothing. */
  close(): void;
}

export function openRunDir(runDir: string, o: { hash: string; policy: RunPolicy; command: string }): OpenRunDir {
  let dir = path.resolve(runDir);
  let created = false, lock: RunLock;
  try {
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) throw runtimeError(M.RunDirInvalid, [runDir, 'it is a file, not a folder'], { file: runDir }, 'choose a folder with --out');
    created = !st;
    if (created) fs.mkdirSync(dir, { recursive: true });
    dir = fs.realpathSync(dir); // a --out that is a link to a folder is the user's choice; inside it nothing is followed
    lock = RunLock.acquire(dir, o.command);
  } catch (e) {
    if (e instanceof PipeRuntimeError || !(e as NodeJS.ErrnoException).syscall) throw e; // located already (locked), or a bug
    throw runtimeError(M.RunDirInvalid, [runDir, `cannot create or lock it: ${(e as Error).message}`], { file: runDir }, 'choose a folder this user can write with --out');
  }
  const close = () => {
    lock.release();
    if (created) {
      try {
        fs.rmdirSync(dir); // a folder this run created and left empty (it failed before writing)
      } catch {
        // not empty: it holds the run
      }
    }
  };
  try {
    const notes: string[] = [];
    if (lock.tookOver) notes.push(`took over the stale lock of pid ${lock.tookOver.pid} (not running): ${lock.tookOver.command}`);
    const before = folderState(dir);
    decide(dir, before, o.hash, o.policy);
    const cleaned = cleanTemporaries(dir); // only in a run's folder (or an empty one), never among the user's files
    if (cleaned) notes.push(`removed ${cleaned} temporar${cleaned === 1 ? 'y' : 'ies'} left by a killed run`);
    if (o.policy === 'overwrite' && before.kind === 'run') {
      removeRun(dir);
      notes.push(`--overwrite: removed the earlier run (${before.what})`);
    }
    return { dir, lock, before, notes, close };
  } catch (e) {
    try {
      close();
    } catch {
      // the error that brought us here matters more
    }
    throw e;
  }
}

/**
 * Deletes what a run wrote. Each entry is first renamed to a temporary (one atomic step: a kill leaves
 * all of checkpoints/ or none of it, never half) and run.json goes last, so a killed --overwrite leaves
 * a folder that is still recognisably a run, and its temporaries are cleaned by the next start.
 */
function removeRun(dir: string): void {
  for (const f of [...RUN_FILES.filter((x) => x !== RUN_MARKER), RUN_MARKER]) {
    const from = path.join(dir, f), to = path.join(dir, `.tmp-overwrite-${f}-${process.pid}`);
    try {
      fs.renameSync(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    fs.rmSync(to, { recursive: true, force: true });
  }
}

/** Marks the folder as this program's run (before anything else of the run is written). */
export function writeRunMarker(dir: string, g: Graph, hash: string): void {
  writeFileAtomic(path.join(dir, RUN_MARKER), JSON.stringify({ format: 'pipec.run', version: 1, graph_hash: hash, source: g.source, created: new Date().toISOString() }, null, 2) + '\n');
}

function decide(dir: string, s: FolderState, hash: string, policy: RunPolicy): void {
  const file = { file: dir };
  if (s.kind === 'foreign')
    throw runtimeError(M.RunDirNotEmpty, [dir, listEntries(s.entries)], file, 'give --out a new or empty folder; pipec does not write into, or delete, files it did not write');
  if (s.kind === 'empty') {
    if (policy === 'resume') throw runtimeError(M.NothingToResume, [dir], file, 'start the run without --resume');
    return;
  }
  if (policy === 'overwrite') return;
  if (s.hash !== hash) {
    if (policy === 'resume') throw runtimeError(M.ResumeMismatch, [`the run in "${dir}" is graph ${s.hash}, this program is graph ${hash}`], { file: path.join(dir, RUN_MARKER) }, 'resume with the program that started the run, or use a new --out folder');
    throw runtimeError(M.RunDirOtherProgram, [dir, s.hash, hash], file, 'choose another --out folder, or add --overwrite to delete that run (its checkpoints and metrics) and start this one');
  }
  if (policy === 'new') throw runtimeError(M.RunDirHasRun, [dir, s.what], file, 'continue it with --resume, or start it again with --overwrite (deletes its checkpoints and metrics), or choose another --out folder');
}

/** What a folder holds; its lock, lock temporaries and run temporaries do not count. */
export function folderState(dir: string): FolderState {
  const entries = fs.readdirSync(dir).filter((n) => n !== LOCK_FILE && !LOCK_TEMP.test(n) && !TEMPORARY.test(n)).sort();
  if (!entries.length) return { kind: 'empty' };
  const hash = markerHash(dir) ?? legacyHash(dir, entries);
  if (!hash) return { kind: 'foreign', entries };
  return { kind: 'run', hash, what: progressOf(dir) };
}

function markerHash(dir: string): string | undefined {
  const m = readJsonFile(path.join(dir, RUN_MARKER)) as { format?: unknown; graph_hash?: unknown } | undefined;
  return m?.format === 'pipec.run' && typeof m.graph_hash === 'string' ? m.graph_hash : undefined;
}

/** A run written before run.json: a pipec graph.json beside checkpoints/ or metrics.jsonl. */
function legacyHash(dir: string, entries: string[]): string | undefined {
  if (!entries.includes('checkpoints') && !entries.includes('metrics.jsonl')) return undefined;
  const g = readJsonFile(path.join(dir, 'graph.json')) as Graph | undefined;
  return g?.format === 'pipec.graph' ? graphHash(g) : undefined;
}

function progressOf(dir: string): string {
  if (fs.existsSync(path.join(dir, 'summary.json'))) return 'it has finished';
  const latest = readLatestName(path.join(dir, 'checkpoints', LATEST_FILE));
  return typeof latest === 'string' ? `its latest checkpoint is ${latest}` : 'it has no checkpoint yet';
}

/** Removes stale temporaries in RUN/, RUN/checkpoints/ and RUN/tb/ (a resume rewrites its files); the caller holds the lock. */
function cleanTemporaries(dir: string): number {
  let n = 0;
  for (const d of [dir, path.join(dir, 'checkpoints'), path.join(dir, 'tb')]) {
    const st = fs.lstatSync(d, { throwIfNoEntry: false });
    if (!st?.isDirectory()) continue;
    for (const name of fs.readdirSync(d)) {
      if (!TEMPORARY.test(name) && !(d === dir && LOCK_TEMP.test(name))) continue;
      fs.rmSync(path.join(d, name), { recursive: true, force: true }); // a link is removed, never followed
      n++;
    }
  }
  return n;
}

/** A small JSON file of the run folder, read only if it is a regular file (not a link, FIFO or device). */
export function readJsonFile(file: string, maxBytes = 1 << 20): unknown {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st?.isFile() || st.size > maxBytes) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function listEntries(entries: string[]): string {
  const shown = entries.slice(0, 4).map((e) => `"${e}"`).join(', ');
  return entries.length > 4 ? `${shown} and ${entries.length - 4} more` : shown;
}
